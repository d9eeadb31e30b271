import type { FormField, OperationForm } from '../../src/http/console/form-types';
import { el } from './dom';

export type { FormField, OperationForm };

/** A mistake in the form itself (JSON that does not parse, odd hex): shown, never sent. */
export class FormInputError extends Error {}

const PLACEHOLDERS: Partial<Record<FormField['kind'], string>> = {
  map: '{"Purpose": "Test"}',
  list: 'one value per line',
  json: 'JSON',
};

/**
 * Values a form starts with. GenerateDataKey* need exactly one of KeySpec and NumberOfBytes (AWS
 * API reference); with neither the first try is a ValidationException, so KeySpec starts at the
 * common AES_256 and the user clears it to give NumberOfBytes instead.
 */
const PRESETS: Record<string, Record<string, string>> = {
  GenerateDataKey: { KeySpec: 'AES_256' },
  GenerateDataKeyWithoutPlaintext: { KeySpec: 'AES_256' },
};

/** The inputs of one operation, named `field-<Member>` (blobs add `encoding-<Member>`). */
export function renderFields(form: OperationForm, container: HTMLElement): void {
  const presets = PRESETS[form.operation] ?? {};
  container.replaceChildren(...form.fields.map((f) => renderField(f, presets[f.name])));
}

function renderField(f: FormField, preset: string | undefined): HTMLElement {
  const id = `field-${f.name}`;
  const label = el('label', { for: id }, f.name, f.isRequired ? el('span', { class: 'required', title: 'required' }, ' *') : '');
  const hint = el('span', { class: 'hint' }, hintOf(f), preset ? `; preset to ${preset}, choose (not set) to leave it out` : '');
  const field = el('div', { class: 'field', 'data-kind': f.kind }, label, inputOf(f, id), hint);
  if (preset) setField(field, f.name, preset);
  return field;
}

/** Sets the control of a field (a blob's is the textarea in its box); a select without that option stays unset. */
export function setField(container: HTMLElement, name: string, value: string): boolean {
  const control = container.querySelector<HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement>(`[name="${name}"]`);
  if (control) control.value = value;
  return control !== null && control.value !== '';
}

function inputOf(f: FormField, id: string): HTMLElement {
  switch (f.kind) {
    case 'enum':
    case 'boolean': {
      const values = f.kind === 'boolean' ? ['true', 'false'] : (f.values ?? []);
      return el('select', { id, name: f.name }, el('option', { value: '' }, '(not set)'), ...values.map((v) => el('option', { value: v }, v)));
    }
    case 'integer':
    case 'number':
      return el('input', { id, name: f.name, type: 'text', inputmode: 'numeric', autocomplete: 'off' });
    case 'blob': {
      const encoding = el('select', { id: `encoding-${f.name}`, 'aria-label': `${f.name} encoding` }, ...['base64', 'text', 'hex'].map((v) => el('option', { value: v }, v === 'text' ? 'UTF-8 text' : v)));
      return el('div', { class: 'blob' }, el('textarea', { id, name: f.name, rows: '2', spellcheck: 'false', autocomplete: 'off' }), encoding);
    }
    case 'map':
    case 'list':
    case 'json':
      return el('textarea', { id, name: f.name, rows: '2', spellcheck: 'false', placeholder: PLACEHOLDERS[f.kind] ?? '' });
    default:
      return el('input', { id, name: f.name, type: 'text', autocomplete: 'off', spellcheck: 'false', ...(f.name === 'KeyId' && { list: 'key-ids' }) });
  }
}

function hintOf(f: FormField): string {
  const unit = f.kind === 'blob' ? ' bytes' : f.kind === 'list' || f.kind === 'json' ? ' items' : f.kind === 'string' ? ' chars' : '';
  const range = f.min !== undefined && f.max !== undefined ? `${f.min}–${f.max}${unit}` : f.max !== undefined ? `≤ ${f.max}${unit}` : '';
  const kind = f.kind === 'blob' ? 'blob (sent as base64)' : f.kind === 'map' ? 'map of strings (JSON)' : f.kind;
  return range ? `${kind}, ${range}` : kind;
}

/**
 * The request body from the inputs: empty inputs are left out; everything else is sent as
 * typed, so the gateway (not the page) judges it and its KMS error is what the user sees.
 */
export function readInput(form: OperationForm, container: HTMLElement): Record<string, unknown> {
  const input: Record<string, unknown> = {};
  for (const f of form.fields) {
    const control = container.querySelector<HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement>(`[name="${f.name}"]`);
    const raw = control?.value ?? '';
    if (raw.trim() === '') continue;
    input[f.name] = valueOf(f, raw, container);
  }
  return input;
}

function valueOf(f: FormField, raw: string, container: HTMLElement): unknown {
  switch (f.kind) {
    case 'boolean':
      return raw === 'true';
    case 'integer':
    case 'number': {
      const n = Number(raw.trim());
      // Not a number: sent as the string it is, and the gateway says so (SerializationException).
      return Number.isFinite(n) ? n : raw;
    }
    case 'blob':
      return toBase64(raw, container.querySelector<HTMLSelectElement>(`#encoding-${f.name}`)?.value ?? 'base64', f.name);
    case 'list':
      return raw.split('\n').map((s) => s.trim()).filter((s) => s !== '');
    case 'map':
    case 'json':
      try {
        return JSON.parse(raw);
      } catch {
        throw new FormInputError(`${f.name}: not valid JSON`);
      }
    default:
      return raw;
  }
}

function toBase64(raw: string, encoding: string, name: string): string {
  if (encoding === 'base64') return raw.trim();
  let bytes: Uint8Array;
  if (encoding === 'hex') {
    const hex = raw.replace(/\s+/g, '');
    if (!/^(?:[0-9a-fA-F]{2})*$/.test(hex)) throw new FormInputError(`${name}: not an even number of hex digits`);
    bytes = Uint8Array.from(hex.match(/../g) ?? [], (b) => parseInt(b, 16));
  } else {
    bytes = new TextEncoder().encode(raw);
  }
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** Byte length of a base64 value, or undefined if it is not base64. */
export function base64Length(value: unknown): number | undefined {
  if (typeof value !== 'string' || !/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(value)) return undefined;
  return (value.length / 4) * 3 - (value.endsWith('==') ? 2 : value.endsWith('=') ? 1 : 0);
}
