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
 * tpm2-pkcs11 over a private software TPM: swtpm on two loopback ports with its state and the
 * tpm2-pkcs11 store in a temp dir. The library talks to swtpm through the swtpm TCTI directly,
 * with no tpm2-abrmd: it flushes its own transient objects. The token is made through PKCS#11
 * (C_InitToken, C_InitPIN with pkcs11-tool) rather than tpm2_ptool, whose tpm2-tools calls leave
 * objects loaded and run the TPM out of object slots when no resource manager sits in between.
 */
export async function startTpm2Token(): Promise<TokenUnderTest | TokenSkipped> {
  const modulePath = findLibrary(['libtpm2_pkcs11.so', 'libtpm2_pkcs11.so.1']);
  const swtpm = findCommand('swtpm');
  const pkcs11Tool = findCommand('pkcs11-tool');
  const hasTcti = findLibrary(['libtss2-tcti-swtpm.so.0', 'libtss2-tcti-swtpm.so']) !== undefined;
  const missing = [...(modulePath ? [] : ['libtpm2-pkcs11-1']), ...(swtpm ? [] : ['swtpm']), ...(hasTcti ? [] : ['libtss2-tcti-swtpm0']), ...(pkcs11Tool ? [] : ['opensc'])];
  if (!modulePath || !swtpm || !pkcs11Tool || !hasTcti) return missingPackages('tpm2-pkcs11 on swtpm', missing);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-tpm2-'));
  const stateDir = path.join(dir, 'tpm');
  const store = path.join(dir, 'store');
  fs.mkdirSync(stateDir);
  fs.mkdirSync(store);
  const port = await freePortPair();
  const child = spawn(swtpm, ['socket', '--tpm2', '--tpmstate', `dir=${stateDir}`, '--server', `type=tcp,port=${port},bindaddr=127.0.0.1`,
    '--ctrl', `type=tcp,port=${port + 1},bindaddr=127.0.0.1`, '--flags', 'not-need-init,startup-clear'], { stdio: 'ignore' });
  const kill = (): void => void child.kill('SIGKILL');
  process.on('exit', kill);
  const stop = async (): Promise<void> => {
    process.off('exit', kill);
    await stopChild(child);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, child);
    const env = {
      TPM2_PKCS11_TCTI: `swtpm:host=127.0.0.1,port=${port}`,
      TPM2TOOLS_TCTI: `swtpm:host=127.0.0.1,port=${port}`,
      TPM2_PKCS11_STORE: store,
      TSS2_LOG: 'all+NONE', // the ESAPI otherwise prints a warning per expected TPM error on stderr
      TPM2_PKCS11_LOG_LEVEL: '0',
    };
    const tokenLabel = randomLabel('qkms-tpm2');
    const pin = crypto.randomBytes(12).toString('hex');
    const soPin = crypto.randomBytes(12).toString('hex');
    registerSecret(pin);
    registerSecret(soPin);
    const toolEnv = { ...process.env, ...env };
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

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}
