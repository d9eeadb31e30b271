/**
 * The shape of /console/operations.json, shared with the browser code (console/src/forms.ts):
 * no imports, so the console's DOM-only type check can read it.
 *
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
