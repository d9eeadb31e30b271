import assert from 'node:assert/strict';
import path from 'node:path';
import { CreateAliasCommand, CreateKeyCommand, DecryptCommand, EnableKeyRotationCommand } from '@aws-sdk/client-kms';
import { chromium, type Browser, type Page } from 'playwright-core';
import { buildConsole } from '../../scripts/build-console';
import { integration } from '../support/integration-hooks';
import { rawCall, startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';
import { CHROMIUM, skipWithout } from '../support/debian-tools';
import { registerSecret } from '../support/secrets';

/** Set to rewrite docs/console.png from this run (a tracked file: not on every run). */
const SCREENSHOT = process.env.QKMS_CONSOLE_SCREENSHOT;

/** Sends the Try It Out form and waits for the answer; returns the response body it shows. */
async function sendForm(p: Page): Promise<Record<string, string>> {
  await p.click('#send');
  await p.locator('#response-status', { hasText: /^HTTP / }).waitFor();
  return JSON.parse((await p.textContent('#response-body'))!) as Record<string, string>;
}

describe('Web console at /console, in headless Chromium against a SoftHSM2 token', function () {
  this.timeout(60000);
  let gw: Harness;
  let browser: Browser;
  let page: Page;
  let keyId: string;
  const pageProblems: string[] = [];

  before(async function () {
    // Debian's chromium: npm test installs it when root (scripts/ensure-test-tools.sh); otherwise skipped, naming the package.
    skipWithout(this, CHROMIUM);
    await buildConsole();
    gw = await startGateway(integration().hsm);
    const created = await gw.client.send(new CreateKeyCommand({ Description: 'console test key' }));
    keyId = created.KeyMetadata!.KeyId!;
    await gw.client.send(new CreateAliasCommand({ AliasName: 'alias/console-test', TargetKeyId: keyId }));
    await gw.client.send(new EnableKeyRotationCommand({ KeyId: keyId }));
    // Headless, and without the setuid sandbox: CI runs as root.
    browser = await chromium.launch({ executablePath: CHROMIUM.command, headless: true, chromiumSandbox: false });
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    // CSP violations and script errors surface here: the page must have none. Chromium also
    // reports each 4xx answer, which the wrong-secret and bad-input cases cause on purpose.
    page.on('console', (m) => m.type() === 'error' && !/^Failed to load resource: the server responded with a status of 400 /.test(m.text()) && pageProblems.push(m.text()));
    page.on('pageerror', (e) => pageProblems.push(e.message));
  });
  after(async () => {
    await browser?.close();
    await gw?.close();
  });

  it('serves the page under a strict CSP, 404s anything else under /console, and leaves POST / as it was', async () => {
    const redirect = await fetch(`${gw.url}/console`, { redirect: 'manual' });
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.get('location'), '/console/');
    const index = await fetch(`${gw.url}/console/`);
    assert.equal(index.status, 200);
    assert.match(index.headers.get('content-type') ?? '', /^text\/html/);
    const csp = index.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
    assert.equal(index.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(index.headers.get('x-frame-options'), 'DENY');
    assert.equal(index.headers.get('cache-control'), 'no-store');
    assert.doesNotMatch(await index.text(), /<script>|\son[a-z]+=|style=/i, 'no inline script, handler or style');
    for (const p of ['/console/nope', '/console/index.html', '/console/..%2fpackage.json', '/console/%2fetc%2fpasswd', '/console/console.js/x', '/console/%', '/console/%E0%A4%A']) {
      const res = await fetch(`${gw.url}${p}`);
      assert.equal(res.status, 404, p);
      assert.ok(res.headers.get('content-security-policy'), p);
    }
    assert.equal((await fetch(`${gw.url}/console/`, { method: 'POST', body: '{}' })).status, 404);
    const forms = (await (await fetch(`${gw.url}/console/operations.json`)).json()) as { region: string; operations: Array<{ operation: string; fields: Array<{ name: string; kind: string }> }> };
    assert.equal(forms.region, gw.config.region);
    const gdk = forms.operations.find((o) => o.operation === 'GenerateDataKey')!;
    assert.deepEqual(gdk.fields.slice(0, 3).map((f) => [f.name, f.kind]), [['KeyId', 'string'], ['KeySpec', 'enum'], ['NumberOfBytes', 'integer']]);
    const kms = await rawCall(gw.url, 'TrentService.ListKeys', '{}');
    assert.equal(kms.status, 200);
    assert.equal(kms.headers.get('content-security-policy'), null, 'the KMS endpoint answers as before');
    assert.equal((await rawCall(gw.url, 'TrentService.ListKeys', '{}', { credentials: false })).status, 400, 'and still demands a signature');
  });

  it('refuses a wrong secret access key with the gateway’s InvalidSignatureException', async () => {
    await page.goto(`${gw.url}/console`);
    await page.fill('#access-key-id', TEST_CREDENTIALS.accessKeyId);
    await page.fill('#secret-access-key', 'not-the-secret-access-key-000000');
    await page.click('#sign-in-button');
    await page.locator('#sign-in-error:not(:empty)').waitFor();
    assert.match(await page.textContent('#sign-in-error') ?? '', /^InvalidSignatureException: The request signature we calculated does not match/);
    assert.equal(await page.isVisible('#tester'), false);
  });

  it('signs in, keeps the secret out of storage, and lists keys with aliases, state, spec and rotation', async () => {
    await page.fill('#secret-access-key', TEST_CREDENTIALS.secretAccessKey);
    await page.click('#sign-in-button');
    const row = page.locator(`#keys-body tr[data-key-id="${keyId}"]`);
    await row.waitFor();
    assert.deepEqual(await row.locator('td').allTextContents(), [keyId, 'alias/console-test', 'Enabled', 'SYMMETRIC_DEFAULT', 'ENCRYPT_DECRYPT', 'enabled', 'console test key']);
    assert.equal(await page.inputValue('#secret-access-key'), '', 'the password field is cleared');
    const stored = await page.evaluate('({ local: localStorage.length, session: sessionStorage.length, cookie: document.cookie })');
    assert.deepEqual(stored, { local: 0, session: 0, cookie: '' });
    assert.deepEqual(await page.context().cookies(), []);
  });

  it('runs a first GenerateDataKey with only a key picked: KeySpec starts at AES_256, and the pick is announced', async () => {
    assert.equal(await page.inputValue('#operation'), 'GenerateDataKey');
    assert.equal(await page.inputValue('#field-KeySpec'), 'AES_256');
    const status = page.locator('#key-status');
    assert.equal(await status.getAttribute('aria-live'), 'polite');
    assert.equal(await status.textContent(), '');
    await page.click(`#keys-body tr[data-key-id="${keyId}"] td:nth-child(3)`);
    assert.equal(await page.inputValue('#field-KeyId'), keyId);
    assert.equal(await status.textContent(), `KeyId set to ${keyId} from the key list (Try It Out, below).`);
    const first = await sendForm(page);
    assert.equal(await page.textContent('#response-status'), 'HTTP 200', await page.textContent('#kms-error') ?? '');
    registerSecret(Buffer.from(first.Plaintext, 'base64'));
    assert.equal(Buffer.from(first.Plaintext, 'base64').length, 32);

    // The preset can be cleared, for NumberOfBytes instead.
    await page.selectOption('#field-KeySpec', '');
    await page.fill('#field-NumberOfBytes', '64');
    const second = await sendForm(page);
    registerSecret(Buffer.from(second.Plaintext, 'base64'));
    assert.equal(Buffer.from(second.Plaintext, 'base64').length, 64);

    await page.selectOption('#operation', 'ListKeys');
    assert.equal(await status.textContent(), '', 'a new form has no KeyId from the list');
    await page.click(`#keys-body tr[data-key-id="${keyId}"]`);
    assert.match(await status.textContent() ?? '', /^ListKeys takes no KeyId: /);
    await page.selectOption('#operation', 'GenerateDataKey');
  });

  it('runs GenerateDataKey from the Try It Out form and shows the signed request and a data key that decrypts', async () => {
    assert.equal(await page.inputValue('#operation'), 'GenerateDataKey');
    await page.click(`#keys-body tr[data-key-id="${keyId}"]`);
    assert.equal(await page.inputValue('#field-KeyId'), keyId, 'a click on a key row picks it');
    await page.fill('#field-KeyId', 'alias/console-test');
    await page.selectOption('#field-KeySpec', 'AES_256');
    await page.fill('#field-EncryptionContext', '{"Purpose": "Test"}');
    await page.click('#send');
    await page.locator('#result').waitFor();
    assert.equal(await page.textContent('#response-status'), 'HTTP 200');
    assert.equal(await page.isVisible('#kms-error'), false);
    const body = JSON.parse((await page.textContent('#response-body'))!) as Record<string, string>;
    const plaintext = Buffer.from(body.Plaintext, 'base64');
    registerSecret(plaintext);
    assert.equal(plaintext.length, 32);
    assert.match(body.KeyId, new RegExp(`${keyId}$`));
    const back = await gw.client.send(new DecryptCommand({ CiphertextBlob: Buffer.from(body.CiphertextBlob, 'base64'), EncryptionContext: { Purpose: 'Test' } }));
    assert.deepEqual(Buffer.from(back.Plaintext!), plaintext);
    assert.match(await page.textContent('#blob-notes') ?? '', /Plaintext: 32 bytes/);

    const request = (await page.textContent('#request-view'))!;
    assert.ok(request.startsWith(`POST ${gw.url}/\n`), request);
    assert.match(request, /^x-amz-target: TrentService\.GenerateDataKey$/m);
    assert.match(request, /^content-type: application\/x-amz-json-1\.1$/m);
    assert.match(request, new RegExp(`^authorization: AWS4-HMAC-SHA256 Credential=${TEST_CREDENTIALS.accessKeyId}/\\d{8}/${gw.config.region}/kms/aws4_request, SignedHeaders=[a-z0-9;-]*x-amz-target[a-z0-9;-]*, Signature=[0-9a-f]{64}$`, 'm'));
    assert.ok(request.endsWith('\n{"KeyId":"alias/console-test","KeySpec":"AES_256","EncryptionContext":{"Purpose":"Test"}}'), request);
    assert.ok(!request.includes(TEST_CREDENTIALS.secretAccessKey));
    if (SCREENSHOT) await page.locator('#tester').screenshot({ path: path.resolve(SCREENSHOT) });
  });

  it('shows the KMS error type and message for bad input, and a blob typed as text or hex', async () => {
    await page.selectOption('#field-KeySpec', '');
    await page.fill('#field-NumberOfBytes', '2000');
    await page.click('#send');
    await page.locator('#kms-error').waitFor();
    assert.equal(await page.textContent('#error-type'), 'ValidationException');
    assert.equal(await page.textContent('#error-message'), "1 validation error detected: Value '2000' at 'numberOfBytes' failed to satisfy constraint: Member must have value less than or equal to 1024");
    assert.equal(await page.textContent('#response-status'), 'HTTP 400');

    await page.selectOption('#operation', 'Encrypt');
    await page.fill('#field-KeyId', keyId);
    await page.fill('#field-Plaintext', 'hello console');
    await page.selectOption('#encoding-Plaintext', 'text');
    await page.click('#send');
    await page.locator('#result').waitFor();
    const encrypted = JSON.parse((await page.textContent('#response-body'))!) as Record<string, string>;
    const decrypted = await gw.client.send(new DecryptCommand({ CiphertextBlob: Buffer.from(encrypted.CiphertextBlob, 'base64') }));
    assert.equal(Buffer.from(decrypted.Plaintext!).toString('utf8'), 'hello console');

    await page.selectOption('#encoding-Plaintext', 'hex');
    await page.fill('#field-Plaintext', 'abc');
    await page.click('#send');
    assert.equal(await page.textContent('#form-error'), 'Plaintext: not an even number of hex digits');
    assert.equal(await page.isVisible('#result'), false);
  });

  it('copies response values but never the data key, and takes a CiphertextBlob to Decrypt', async () => {
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: gw.url });
    await page.selectOption('#operation', 'GenerateDataKey');
    await page.fill('#field-KeyId', 'alias/console-test');
    await page.fill('#field-EncryptionContext', '{"Purpose": "Copy"}');
    const body = await sendForm(page);
    registerSecret(Buffer.from(body.Plaintext, 'base64'));
    assert.deepEqual(await page.evaluate('[...document.querySelectorAll("#blob-notes button")].map((b) => b.getAttribute("aria-label"))'), ['Copy CiphertextBlob', 'Use this CiphertextBlob in Decrypt', 'Copy KeyId']);

    await page.click('#blob-notes button[aria-label="Copy CiphertextBlob"]');
    await page.locator('#result-status', { hasText: 'CiphertextBlob copied to the clipboard.' }).waitFor();
    assert.equal(await page.evaluate('navigator.clipboard.readText()'), body.CiphertextBlob);
    await page.click('#blob-notes button[aria-label="Copy KeyId"]');
    await page.locator('#result-status', { hasText: 'KeyId copied to the clipboard.' }).waitFor();
    assert.equal(await page.evaluate('navigator.clipboard.readText()'), body.KeyId);
    assert.equal(await page.getAttribute('#result-status', 'aria-live'), 'polite');

    await page.getByRole('button', { name: 'Use this CiphertextBlob in Decrypt' }).click();
    assert.equal(await page.inputValue('#operation'), 'Decrypt');
    assert.equal(await page.inputValue('#field-CiphertextBlob'), body.CiphertextBlob);
    assert.equal(await page.inputValue('#encoding-CiphertextBlob'), 'base64');
    assert.equal(await page.inputValue('#field-KeyId'), body.KeyId);
    assert.deepEqual(JSON.parse(await page.inputValue('#field-EncryptionContext')), { Purpose: 'Copy' });
    assert.equal(await page.textContent('#tester-status'), 'Decrypt filled from the GenerateDataKey response: CiphertextBlob, KeyId, EncryptionContext.');
    assert.equal(await page.evaluate('document.activeElement.id'), 'field-CiphertextBlob');
    assert.ok(!(await page.content()).includes(body.Plaintext), 'the data key left the page with its response');
    const stored = await page.evaluate('({ local: localStorage.length, session: sessionStorage.length, cookie: document.cookie })');
    assert.deepEqual(stored, { local: 0, session: 0, cookie: '' });

    const decrypted = await sendForm(page);
    assert.equal(await page.textContent('#response-status'), 'HTTP 200', await page.textContent('#kms-error') ?? '');
    assert.equal(decrypted.Plaintext, body.Plaintext);
    assert.equal(await page.locator('#blob-notes button[aria-label="Copy Plaintext"]').count(), 0);
    assert.equal(await page.locator('#blob-notes button', { hasText: 'Use this CiphertextBlob' }).count(), 0);

    await page.selectOption('#operation', 'Encrypt');
    await page.fill('#field-KeyId', keyId);
    await page.fill('#field-Plaintext', 'aGVsbG8gZGVjcnlwdA==');
    await sendForm(page);
    await page.getByRole('button', { name: 'Use this CiphertextBlob in Decrypt' }).click();
    assert.equal(await page.textContent('#tester-status'), 'Decrypt filled from the Encrypt response: CiphertextBlob, KeyId, EncryptionAlgorithm.');
    assert.equal(await page.inputValue('#field-EncryptionAlgorithm'), 'SYMMETRIC_DEFAULT');
    assert.equal((await sendForm(page)).Plaintext, 'aGVsbG8gZGVjcnlwdA==');
  });

  it('leaves no data key or form input on the page after sign-out', async () => {
    await page.selectOption('#operation', 'GenerateDataKey');
    await page.fill('#field-KeyId', keyId);
    await page.selectOption('#field-KeySpec', 'AES_256');
    await page.click('#send');
    await page.locator('#response-status', { hasText: 'HTTP 200' }).waitFor();
    const { Plaintext } = JSON.parse((await page.textContent('#response-body'))!) as Record<string, string>;
    registerSecret(Buffer.from(Plaintext, 'base64'));
    await page.click('#sign-out');
    const html = await page.content();
    assert.ok(!html.includes(Plaintext), 'the data key is gone from the page');
    assert.equal(await page.inputValue('#field-KeyId'), '', 'the form is drawn empty');
  });

  it('is usable 420 px wide: no sideways page scroll, key ids on one line, the key table scrolls by itself', async () => {
    const narrow = await browser.newPage({ viewport: { width: 420, height: 800 } });
    narrow.on('pageerror', (e) => pageProblems.push(e.message));
    const pageWidth = async () => Number(await narrow.evaluate('document.documentElement.scrollWidth'));
    await narrow.goto(`${gw.url}/console`);
    await narrow.locator('#operation option').first().waitFor({ state: 'attached' });
    assert.ok((await pageWidth()) <= 420, `signed out: ${await pageWidth()} px wide`);
    await narrow.fill('#access-key-id', TEST_CREDENTIALS.accessKeyId);
    await narrow.fill('#secret-access-key', TEST_CREDENTIALS.secretAccessKey);
    await narrow.click('#sign-in-button');
    const row = narrow.locator(`#keys-body tr[data-key-id="${keyId}"]`);
    await row.waitFor();
    assert.ok((await pageWidth()) <= 420, `signed in: ${await pageWidth()} px wide`);

    assert.equal(await row.locator('td').first().getAttribute('title'), keyId);
    const lineCount = (cell: string) => narrow.evaluate(`(() => {
      const range = document.createRange();
      range.selectNodeContents(document.querySelector('#keys-body tr[data-key-id="${keyId}"] ${cell}'));
      return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
    })()`);
    assert.equal(await lineCount('td:nth-child(1)'), 1, 'the key id is on one line');
    assert.equal(await lineCount('td:nth-child(2) span'), 1, 'the alias is on one line');
    const lastColumn = (await narrow.evaluate(`(() => {
      const box = document.querySelector('#keys .table-scroll');
      box.scrollLeft = box.scrollWidth;
      const r = document.querySelector('#keys thead th:last-child').getBoundingClientRect();
      return [r.left, r.right];
    })()`)) as number[];
    assert.ok(lastColumn[0] >= 0 && lastColumn[1] <= 420, `the last column scrolls into view: ${lastColumn}`);

    await row.click();
    for (const control of await narrow.locator('#operation, #fields input, #fields textarea, #fields select, #send').all()) {
      const box = (await control.boundingBox())!;
      assert.ok(box.x >= 0 && box.x + box.width <= 420, `${await control.getAttribute('id')} is within the page: ${JSON.stringify(box)}`);
    }
    const { Plaintext } = await sendForm(narrow);
    assert.equal(await narrow.textContent('#response-status'), 'HTTP 200');
    registerSecret(Buffer.from(Plaintext, 'base64'));
    assert.ok((await pageWidth()) <= 420, `with a response: ${await pageWidth()} px wide`);
    await narrow.close();
  });

  it('produced no script errors or CSP violations, and never put the secret in a log', () => {
    assert.deepEqual(pageProblems, []);
    assert.ok(!gw.logText().includes(TEST_CREDENTIALS.secretAccessKey));
    assert.match(gw.logText(), /"operation":"GenerateDataKey"/, 'the console’s calls were logged as ordinary KMS requests');
  });
});
