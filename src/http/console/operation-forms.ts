import type JoiBase from 'joi';
import type { Operation } from '../../operations/context';

/**
 * One input of an operation's request, as the console draws it. `kind` is how it is edited:
 * enum -> a select; blob -> text with an encoding (base64 on the wire, kms-protocol.md §1);
 * map -> a JSON object of strings (EncryptionContext); list -> one string per line; json -> any
 * JSON value (Tags, Recipient, ...).
 */
export interface FormField {
  name: string;
  kind: 'string' | 'enum' | 'integer' | 'number' | 'boolean' | 'blob' | 'map' | 'list' | 'json';
  isRequired: boolean;
  values?: string[];
  min?: number;
  max?: number;
}

export interface OperationForm {
  operation: string;
  fields: FormField[];
}

interface Described {
  type: string;
  flags?: { presence?: string; only?: boolean };
  allow?: unknown[];
  rules?: Array<{ name: string; args?: { limit?: number } }>;
  items?: Described[];
  patterns?: unknown[];
}

/**
 * Every operation's form, derived from the same joi schema dispatch validates with (its
 * `describe()`), so a new operation or member appears in the console without console code.
 */
export function operationForms(registry: ReadonlyMap<string, Operation>): OperationForm[] {
  return [...registry].map(([operation, op]) => ({ operation, fields: fieldsOf(op.schema) }));
}

function fieldsOf(schema: JoiBase.ObjectSchema): FormField[] {
  const keys = (schema.describe() as { keys?: Record<string, Described> }).keys ?? {};
  // Required members first, then the schema's order: the form reads like the API reference.
  const fields = Object.entries(keys).map(([name, d]) => fieldOf(name, d));
  return [...fields.filter((f) => f.isRequired), ...fields.filter((f) => !f.isRequired)];
}

function fieldOf(name: string, d: Described): FormField {
  const field: FormField = { name, kind: kindOf(d), isRequired: d.flags?.presence === 'required' };
  if (field.kind === 'enum') field.values = (d.allow ?? []).map(String);
  const min = limit(d, 'min');
  const max = limit(d, 'max');
  if (min !== undefined) field.min = min;
  if (max !== undefined) field.max = max;
  return field;
}

function kindOf(d: Described): FormField['kind'] {
  switch (d.type) {
    case 'string':
      return d.flags?.only ? 'enum' : 'string';
    case 'number':
      return d.rules?.some((r) => r.name === 'integer') ? 'integer' : 'number';
    case 'boolean':
    case 'blob':
      return d.type;
    case 'object':
      return d.patterns ? 'map' : 'json';
    case 'array':
      return d.items?.length === 1 && d.items[0].type === 'string' ? 'list' : 'json';
    default:
      return 'json';
  }
}

function limit(d: Described, rule: 'min' | 'max'): number | undefined {
  return d.rules?.find((r) => r.name === rule)?.args?.limit;
}
