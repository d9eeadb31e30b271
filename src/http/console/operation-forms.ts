import type JoiBase from 'joi';
import type { Operation } from '../../operations/context';
import type { FormField, OperationForm } from './form-types';

export type { FormField, OperationForm };

interface Described {
  type: string;
  flags?: { presence?: string; only?: boolean };
  allow?: unknown[];
  rules?: Array<{ name: string; args?: { limit?: number } }>;
  items?: Described[];
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
    case 'stringMap':
      return 'map';
    case 'array':
      return d.items?.length === 1 && d.items[0].type === 'string' ? 'list' : 'json';
    default:
      return 'json';
  }
}

function limit(d: Described, rule: 'min' | 'max'): number | undefined {
  return d.rules?.find((r) => r.name === rule)?.args?.limit;
}
