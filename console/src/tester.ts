import { byId, el } from './dom';
import { base64Length, FormInputError, readInput, renderFields, type OperationForm } from './forms';
import type { Credentials, KmsResult, SentRequest } from './kms-call';
import { kmsCall } from './kms-call';

/** Response members that are blobs: the panel notes their decoded length. */
const BLOB_MEMBERS = new Set(['Plaintext', 'CiphertextBlob', 'PublicKey', 'PrivateKeyPlaintext', 'PrivateKeyCiphertextBlob', 'Signature', 'Mac', 'SharedSecret', 'CiphertextForRecipient']);

/**
 * The "Try It Out" panel (after the spec pages' ApiTester): pick an operation, fill its form,
 * send it signed, and see the exact request and the response or KMS error.
 */
export function setUpTester(forms: OperationForm[], session: () => { credentials: Credentials; region: string } | undefined): () => void {
  const select = byId<HTMLSelectElement>('operation');
  const fields = byId('fields');
  select.replaceChildren(...forms.map((f) => el('option', { value: f.operation }, f.operation)));
  select.value = forms.some((f) => f.operation === 'GenerateDataKey') ? 'GenerateDataKey' : forms[0].operation;
  const current = () => forms.find((f) => f.operation === select.value)!;
  const draw = () => {
    renderFields(current(), fields);
    clearResult();
    byId('key-status').textContent = ''; // the KeyId it reports was in the form just replaced
  };
  select.addEventListener('change', draw);
  draw();
  byId('tester-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const s = session();
    if (s) void send(current(), fields, s);
  });
  return draw; // sign-out: empty form and no result (it may hold a data key) left on the page
}

async function send(form: OperationForm, fields: HTMLElement, s: { credentials: Credentials; region: string }): Promise<void> {
  clearResult();
  let input: Record<string, unknown>;
  try {
    input = readInput(form, fields);
  } catch (err) {
    if (!(err instanceof FormInputError)) throw err;
    byId('form-error').textContent = err.message;
    return;
  }
  const button = byId<HTMLButtonElement>('send');
  button.disabled = true;
  try {
    showResult(await kmsCall(s.credentials, s.region, form.operation, input));
  } catch (err) {
    byId('form-error').textContent = `The request failed: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    button.disabled = false;
  }
}

function clearResult(): void {
  byId('form-error').textContent = '';
  byId('result').hidden = true;
  for (const id of ['request-view', 'response-status', 'response-headers', 'response-body', 'error-type', 'error-message']) byId(id).textContent = '';
  byId('blob-notes').replaceChildren();
}

function showResult(r: KmsResult): void {
  byId('request-view').textContent = formatRequest(r.request);
  byId('response-status').textContent = `HTTP ${r.status}`;
  byId('response-status').className = r.error ? 'status error' : 'status ok';
  byId('response-headers').textContent = Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`).join('\n');
  byId('response-body').textContent = r.json ? JSON.stringify(r.json, null, 2) : r.text;
  byId('kms-error').hidden = !r.error;
  byId('error-type').textContent = r.error?.type ?? '';
  byId('error-message').textContent = r.error?.message ?? '';
  const notes = Object.entries(r.json ?? {})
    .filter(([k]) => BLOB_MEMBERS.has(k))
    .map(([k, v]) => el('li', {}, `${k}: ${base64Length(v) ?? '?'} bytes (base64)`));
  byId('blob-notes').replaceChildren(...notes);
  byId('result').hidden = false;
}

function formatRequest(req: SentRequest): string {
  const headers = Object.entries(req.headers).map(([k, v]) => `${k}: ${v}`);
  // The body exactly as signed and sent (compact JSON), not a pretty-printed copy.
  return [`${req.method} ${req.url}`, ...headers, '', req.body].join('\n');
}
