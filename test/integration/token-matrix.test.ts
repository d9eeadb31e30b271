import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as kms from '@aws-sdk/client-kms';
import { startChildGateway, spawnGateway, type ChildGateway } from '../support/child-gateway';
import { runQkms } from '../support/cli';
import { isSkipped, startToken, type TokenKind, type TokenUnderTest } from '../support/tokens';
import { KMS_OPERATION_STEPS, type StepOutcome } from '../support/token-matrix-steps';

const ROOT = path.resolve(__dirname, '../..');
const TABLE_DOC = path.join(ROOT, 'docs/hsm/README.md');

/**
 * Every KMS operation on every token the harness can start: it works, or it answers
 * UnsupportedOperationException naming the mechanism the token lacks — never a 500, never a
 * gateway that stops serving. The outcomes must be the table in docs/hsm/README.md (the README
 * links it): what the docs say about a token is what this run found.
 */
describe('Every operation on every token (the token matrix)', function () {
  this.timeout(240_000);
  const found: Record<string, Record<string, StepOutcome>> = {};

  const tokens: Array<{ column: string; kind: TokenKind | 'softhsm2' }> = [
    { column: 'SoftHSM2', kind: 'softhsm2' },
    { column: 'opencryptoki', kind: 'opencryptoki' },
    { column: 'NSS softoken', kind: 'nss' },
  ];

  for (const { column, kind } of tokens) {
    it(`${column}: the gateway starts, and every operation works or is UnsupportedOperationException naming a mechanism`, async function () {
      const started = kind === 'softhsm2' ? await embeddedSoftHsm() : await startToken(kind);
      if (isSkipped(started)) {
        console.log(`      skipped: ${started.skip}`);
        return this.skip();
      }
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `qkms-${kind}-data-`));
      const gw = await startChildGateway(kind === 'softhsm2' ? started.env : gatewayEnv(started, dataDir));
      try {
        found[column] = await runSteps(gw);
        const failures = Object.entries(found[column]).filter(([, o]) => o.startsWith('FAILED'));
        assert.deepEqual(failures, [], `${column}: every step works or is UnsupportedOperationException naming a mechanism`);
        assert.equal((await fetch(`${gw.url}/ready`)).status, 200, 'the token is still in service after every step (no client request opens the circuit breaker)');
        await gw.stop();
        // The trail of everything above, checked against its HSM-signed anchor on this token.
        const verified = await runQkms(['audit', 'verify'], kind === 'softhsm2' ? started.env : gatewayEnv(started, dataDir));
        assert.equal(verified.code, 0, verified.stdout + verified.stderr);
      } finally {
        await gw.stop();
        await started.stop();
      }
    });
  }

  it('tpm2-pkcs11 on swtpm: the start stops with exit 2 and names what the token lacks', async function () {
    const started = await startToken('tpm2');
    if (isSkipped(started)) {
      console.log(`      skipped: ${started.skip}`);
      return this.skip();
    }
    try {
      const { output, exited } = spawnGateway(gatewayEnv(started, fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-tpm2-data-'))));
      assert.equal(await exited, 2, output());
      assert.match(output(), /refusing to start: the token lacks what QKMS needs/);
      assert.match(output(), /CKM_AES_KEY_GEN[^"]*(CKR_FUNCTION_NOT_SUPPORTED|not listed|refused)/, 'names the mechanism and why');
    } finally {
      await started.stop();
    }
  });

  it('the table in docs/hsm/README.md is what this run found', function () {
    const columns = Object.keys(found);
    if (columns.length === 0) return this.skip();
    const documented = documentedTable();
    const mismatches: string[] = [];
    for (const column of columns) {
      for (const [step, outcome] of Object.entries(found[column])) {
        const doc = documented[step]?.[column];
        if (doc !== summary(outcome)) mismatches.push(`${step} on ${column}: docs say ${doc ?? 'nothing'}, the run found ${summary(outcome)} (${outcome})`);
      }
    }
    assert.deepEqual(mismatches, [], `update the table in ${path.relative(ROOT, TABLE_DOC)}:\n${renderTable(found)}`);
  });
});

function gatewayEnv(token: TokenUnderTest, dataDir: string): Record<string, string> {
  return {
    ...token.env,
    QKMS_DATA_DIR: dataDir,
    QKMS_PKCS11_MODULE: token.modulePath,
    QKMS_PKCS11_TOKEN_LABEL: token.tokenLabel,
    QKMS_PKCS11_PIN: token.pin,
    QKMS_HSM_PROFILE: 'generic',
    ...(token.initArgs ? { QKMS_PKCS11_INIT_ARGS: token.initArgs } : {}),
  };
}

/** The embedded default, as `npm start` runs it: the same steps on SoftHSM2 give the table's first column. */
async function embeddedSoftHsm(): Promise<TokenUnderTest> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-softhsm-matrix-'));
  return { kind: 'softhsm2' as TokenKind, modulePath: '', tokenLabel: '', pin: '', soPin: '', env: { QKMS_DATA_DIR: dataDir }, stop: async () => fs.rmSync(dataDir, { recursive: true, force: true }) };
}

async function runSteps(gw: ChildGateway): Promise<Record<string, StepOutcome>> {
  const outcomes: Record<string, StepOutcome> = {};
  const state = new Map<string, string>();
  for (const step of KMS_OPERATION_STEPS) {
    const missing = (step.needs ?? []).find((n) => !state.has(n));
    if (missing) {
      outcomes[step.name] = `unsupported: needs the ${missing} key, which this token cannot make`;
      continue;
    }
    try {
      await step.run(gw.client, state);
      outcomes[step.name] = 'works';
    } catch (err) {
      const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
      // Unsupported must say what the token lacks: a mechanism or a PKCS#11 function.
      outcomes[step.name] =
        err instanceof kms.UnsupportedOperationException && /\bCKM_[A-Z0-9_]+|\bC_[A-Z][A-Za-z]+/.test(e.message ?? '')
          ? `unsupported: ${e.message}`
          : `FAILED: ${e.name}: ${e.message} (HTTP ${e.$metadata?.httpStatusCode})`;
    }
  }
  return outcomes;
}

function summary(outcome: StepOutcome): string {
  return outcome === 'works' ? 'yes' : outcome.startsWith('unsupported') ? 'no' : 'FAILED';
}

/** The rows of the table between the token-matrix markers: step -> column -> yes/no. */
function documentedTable(): Record<string, Record<string, string>> {
  const text = fs.readFileSync(TABLE_DOC, 'utf8');
  const block = /<!-- token-matrix -->([\s\S]*?)<!-- \/token-matrix -->/.exec(text)?.[1] ?? '';
  const rows = block.split('\n').filter((l) => l.startsWith('|') && !/^\|[-| ]+\|$/.test(l));
  const [header, ...body] = rows.map((r) => r.split('|').slice(1, -1).map((c) => c.trim()));
  if (!header) return {};
  return Object.fromEntries(body.map((cells) => [cells[0].replace(/`/g, ''), Object.fromEntries(header.slice(1).map((col, i) => [col, cells[i + 1].replace(/[*_]/g, '').split(' ')[0]]))]));
}

function renderTable(found: Record<string, Record<string, StepOutcome>>): string {
  const columns = Object.keys(found);
  const lines = [`| Operation | ${columns.join(' | ')} |`, `|---|${columns.map(() => '---').join('|')}|`];
  const cell = (o: StepOutcome | undefined) => (!o ? '' : o === 'works' ? 'yes' : `${summary(o)} (${/\bCKM_[A-Z0-9_]+|\bC_[A-Z][A-Za-z]+|needs the [^,]+ key/.exec(o)?.[0] ?? o})`);
  for (const step of KMS_OPERATION_STEPS) lines.push(`| \`${step.name}\` | ${columns.map((c) => cell(found[c][step.name])).join(' | ')} |`);
  return lines.join('\n');
}
