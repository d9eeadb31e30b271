import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { registerSecret } from '../secrets';
import { findCommand, findLibrary, missingPackages, randomLabel, run } from './common';
import type { TokenSkipped, TokenUnderTest } from './types';

/**
 * tpm2-pkcs11 over a private software TPM: swtpm on two loopback ports, a private D-Bus session bus
 * and tpm2-abrmd on it, with the TPM state and the tpm2-pkcs11 store in a temp dir. The resource
 * manager is needed: swtpm holds three loaded objects, and tpm2-pkcs11 keeps every key it makes
 * loaded, so straight on the swtpm TCTI the second key pair fails with "out of memory for object
 * contexts" (CKR_GENERAL_ERROR). The token is made through PKCS#11 (C_InitToken, C_InitPIN with
 * pkcs11-tool), as an operator without tpm2_ptool would.
 */
export async function startTpm2Token(): Promise<TokenUnderTest | TokenSkipped> {
  const modulePath = findLibrary(['libtpm2_pkcs11.so', 'libtpm2_pkcs11.so.1']);
  const swtpm = findCommand('swtpm');
  const pkcs11Tool = findCommand('pkcs11-tool');
  const abrmd = findCommand('tpm2-abrmd');
  const dbus = findCommand('dbus-daemon');
  const getrandom = findCommand('tpm2_getrandom');
  const needs: Array<[unknown, string]> = [[modulePath, 'libtpm2-pkcs11-1'], [swtpm, 'swtpm'], [findLibrary(['libtss2-tcti-swtpm.so.0']), 'libtss2-tcti-swtpm0'],
    [abrmd, 'tpm2-abrmd'], [findLibrary(['libtss2-tcti-tabrmd.so.0']), 'libtss2-tcti-tabrmd0'], [dbus, 'dbus-daemon'], [getrandom, 'tpm2-tools'], [pkcs11Tool, 'opensc']];
  const missing = needs.filter(([found]) => !found).map(([, pkg]) => pkg);
  if (!modulePath || !swtpm || !pkcs11Tool || !abrmd || !dbus || !getrandom || missing.length) return missingPackages('tpm2-pkcs11 on swtpm', missing);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-tpm2-'));
  const stateDir = path.join(dir, 'tpm');
  const store = path.join(dir, 'store');
  fs.mkdirSync(stateDir);
  fs.mkdirSync(store);
  const port = await freePortPair();
  const children: ChildProcess[] = [];
  const kill = (): void => children.forEach((c) => c.kill('SIGKILL'));
  process.on('exit', kill);
  const stop = async (): Promise<void> => {
    process.off('exit', kill);
    for (const c of children.reverse()) await stopChild(c);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const tpm = spawn(swtpm, ['socket', '--tpm2', '--tpmstate', `dir=${stateDir}`, '--server', `type=tcp,port=${port},bindaddr=127.0.0.1`,
      '--ctrl', `type=tcp,port=${port + 1},bindaddr=127.0.0.1`, '--flags', 'not-need-init,startup-clear'], { stdio: 'ignore' });
    children.push(tpm);
    await waitForPort(port, tpm);
    const busAddress = `unix:path=${path.join(dir, 'bus')}`;
    children.push(spawn(dbus, ['--session', '--nofork', `--address=${busAddress}`], { stdio: 'ignore' }));
    const env = {
      DBUS_SESSION_BUS_ADDRESS: busAddress,
      TPM2_PKCS11_TCTI: 'tabrmd:bus_type=session',
      TPM2TOOLS_TCTI: 'tabrmd:bus_type=session',
      TPM2_PKCS11_STORE: store,
      TSS2_LOG: 'all+NONE', // the ESAPI otherwise prints a warning per expected TPM error on stderr
    };
    const toolEnv = { ...process.env, ...env };
    await waitFor(() => fs.existsSync(path.join(dir, 'bus')), 'dbus-daemon did not create its socket');
    children.push(spawn(abrmd, ['--session', '--allow-root', `--tcti=swtpm:host=127.0.0.1,port=${port}`], { stdio: 'ignore', env: toolEnv }));
    await waitFor(() => succeeds(getrandom, ['1'], toolEnv), 'tpm2-abrmd did not answer on the private bus');
    const tokenLabel = randomLabel('qkms-tpm2');
    const pin = crypto.randomBytes(12).toString('hex');
    const soPin = crypto.randomBytes(12).toString('hex');
    registerSecret(pin);
    registerSecret(soPin);
    run(pkcs11Tool, ['--module', modulePath, '--init-token', '--label', tokenLabel, '--so-pin', soPin], { env: toolEnv });
    run(pkcs11Tool, ['--module', modulePath, '--token-label', tokenLabel, '--login', '--login-type', 'so', '--so-pin', soPin, '--init-pin', '--pin', pin], { env: toolEnv });
    return { kind: 'tpm2', modulePath, tokenLabel, pin, soPin, env, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Two consecutive free loopback ports (swtpm's server and control channels). */
async function freePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 20000 + crypto.randomInt(40000);
    if ((await canListen(port)) && (await canListen(port + 1))) return port;
  }
  throw new Error('swtpm: found no two free consecutive loopback ports');
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`swtpm exited with ${child.exitCode} before listening on ${port}`);
    const connected = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.end(() => resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (connected) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`swtpm did not listen on 127.0.0.1:${port} within 10 s`);
}

function succeeds(command: string, args: string[], env: NodeJS.ProcessEnv): boolean {
  try {
    run(command, args, { env });
    return true;
  } catch {
    return false;
  }
}

async function waitFor(ready: () => boolean, failure: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`${failure} within 10 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}
