import { byId, el } from './dom';
import { base64Length, FormInputError, readInput, renderFields, setField, type OperationForm } from './forms';
import type { Credentials, KmsResult, SentRequest } from './kms-call';
import { kmsCall } from './kms-call';

/** Response members that are blobs: the panel notes their decoded length. */
const BLOB_MEMBERS = new Set(['Plaintext', 'CiphertextBlob', 'PublicKey', 'PrivateKeyPlaintext', 'PrivateKeyCiphertextBlob', 'Signature', 'Mac', 'SharedSecret', 'CiphertextForRecipient']);
/** Key material: shown in the response panel and nowhere else, so it gets no copy button. */
const SECRET_MEMBERS = new Set(['Plaintext', 'PrivateKeyPlaintext', 'SharedSecret']);

/** Switches the panel to Decrypt with what a response's CiphertextBlob needs to decrypt. */
type UseInDecrypt = (r: KmsResult, operation: string) => void;

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
    byId('tester-status').textContent = '';
    byId('key-status').textContent = ''; // the KeyId it reports was in the form just replaced
  };
  select.addEventListener('change', draw);
  draw();
  const useInDecrypt: UseInDecrypt = (r, operation) => {
    // Drawing Decrypt also takes the previous response, and any data key in it, off the page.
    select.value = 'Decrypt';
    draw();
    const sent = JSON.parse(r.request.body) as Record<string, unknown>;
    const values = {
      CiphertextBlob: r.json?.CiphertextBlob,
      KeyId: r.json?.KeyId,
      EncryptionContext: sent.EncryptionContext ?? sent.DestinationEncryptionContext, // ReEncrypt's new context
      EncryptionAlgorithm: r.json?.EncryptionAlgorithm ?? r.json?.DestinationEncryptionAlgorithm,
    };
    const filled: string[] = [];
    for (const [name, v] of Object.entries(values)) {
      if (v !== undefined && setField(fields, name, typeof v === 'string' ? v : JSON.stringify(v))) filled.push(name);
    }
    byId('tester-status').textContent = `Decrypt filled from the ${operation} response: ${filled.join(', ')}.`;
    byId('field-CiphertextBlob').focus();
  };
  byId('tester-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const s = session();
    if (s) void send(current(), fields, s, forms.some((f) => f.operation === 'Decrypt') ? useInDecrypt : undefined);
  });
  return draw; // sign-out: empty form and no result (it may hold a data key) left on the page
}

async function send(form: OperationForm, fields: HTMLElement, s: { credentials: Credentials; region: string }, useInDecrypt?: UseInDecrypt): Promise<void> {
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
    const result = await kmsCall(s.credentials, s.region, form.operation, input);
    showResult(result, useInDecrypt && (() => useInDecrypt(result, form.operation)));
  } catch (err) {
    byId('form-error').textContent = `The request failed: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    button.disabled = false;
  }
}

function clearResult(): void {
  byId('form-error').textContent = '';
  byId('result').hidden = true;
  for (const id of ['request-view', 'response-status', 'response-headers', 'response-body', 'error-type', 'error-message', 'result-status']) byId(id).textContent = '';
  byId('blob-notes').replaceChildren();
}

function showResult(r: KmsResult, useInDecrypt?: () => void): void {
  byId('request-view').textContent = formatRequest(r.request);
  byId('response-status').textContent = `HTTP ${r.status}`;
  byId('response-status').className = r.error ? 'status error' : 'status ok';
  byId('response-headers').textContent = Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`).join('\n');
  byId('response-body').textContent = r.json ? JSON.stringify(r.json, null, 2) : r.text;
  byId('kms-error').hidden = !r.error;
  byId('error-type').textContent = r.error?.type ?? '';
  byId('error-message').textContent = r.error?.message ?? '';
  const notes = Object.entries(r.json ?? {})
    .filter(([k, v]) => BLOB_MEMBERS.has(k) || (k === 'KeyId' && typeof v === 'string'))
    .map(([k, v]) => valueNote(k, v, k === 'CiphertextBlob' ? useInDecrypt : undefined));
  byId('blob-notes').replaceChildren(...notes);
  byId('result').hidden = false;
}

/** One response value: a blob's length or the key ARN, a copy button unless it is key material, and for a CiphertextBlob the way to Decrypt. */
function valueNote(name: string, value: unknown, useInDecrypt?: () => void): HTMLElement {
  const li = BLOB_MEMBERS.has(name)
    ? el('li', {}, `${name}: ${base64Length(value) ?? '?'} bytes (base64)`)
    : el('li', {}, `${name}: `, el('code', { class: 'id-clip', title: String(value) }, String(value)));
  if (typeof value === 'string' && !SECRET_MEMBERS.has(name)) li.append(button('Copy', () => void copy(name, value), `Copy ${name}`));
  if (useInDecrypt) li.append(button('Use this CiphertextBlob in Decrypt', useInDecrypt));
  return li;
}

function button(text: string, onClick: () => void, label = text): HTMLButtonElement {
  const b = el('button', { type: 'button', 'aria-label': label }, text);
  b.addEventListener('click', onClick);
  return b;
}

async function copy(name: string, value: string): Promise<void> {
  const status = byId('result-status');
  // The Clipboard API exists in secure contexts only: https, or http on localhost.
  if (!window.isSecureContext || !navigator.clipboard) {
    status.textContent = `This page cannot reach the clipboard over plain http to a remote host: select ${name} in the response to copy it.`;
    return;
  }
  try {
    await navigator.clipboard.writeText(value);
    status.textContent = `${name} copied to the clipboard.`;
  } catch (err) {
    status.textContent = `Could not copy ${name}: ${err instanceof Error ? err.message : String(err)}`;
  }
}

function formatRequest(req: SentRequest): string {
  const headers = Object.entries(req.headers).map(([k, v]) => `${k}: ${v}`);
  // The body exactly as signed and sent (compact JSON), not a pretty-printed copy.
  return [`${req.method} ${req.url}`, ...headers, '', req.body].join('\n');
}
