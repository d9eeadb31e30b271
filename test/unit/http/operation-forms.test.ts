import assert from 'node:assert/strict';
import { operationForms } from '../../../src/http/console/operation-forms';
import type { Operation } from '../../../src/operations/context';
import { registry } from '../../../src/operations/registry';
import { Joi, encryptionContextSchema, grantTokensSchema, tagsSchema } from '../../../src/operations/shared-schemas';

const op = (schema: Operation['schema']): Operation => ({ schema, handle: async () => undefined });

describe('Console forms from the operations’ joi schemas', () => {
  it('gives each member the input that edits it, required members first, with its limits', () => {
    const [form] = operationForms(
      new Map([
        [
          'Example',
          op(
            Joi.object({
              DryRun: Joi.boolean(),
              Plaintext: Joi.blob().min(1).max(4096).required(),
              KeySpec: Joi.string().valid('AES_256', 'AES_128'),
              NumberOfBytes: Joi.number().integer().min(1).max(1024),
              Ratio: Joi.number(),
              KeyId: Joi.string().min(1).max(2048).required(),
              Description: Joi.string().min(0).max(8192).allow(''),
              EncryptionContext: encryptionContextSchema,
              GrantTokens: grantTokensSchema,
              Tags: tagsSchema,
              Recipient: Joi.object(),
            }),
          ),
        ],
      ]),
    );
    assert.equal(form.operation, 'Example');
    assert.deepEqual(form.fields, [
      { name: 'Plaintext', kind: 'blob', isRequired: true, min: 1, max: 4096 },
      { name: 'KeyId', kind: 'string', isRequired: true, min: 1, max: 2048 },
      { name: 'DryRun', kind: 'boolean', isRequired: false },
      { name: 'KeySpec', kind: 'enum', isRequired: false, values: ['AES_256', 'AES_128'] },
      { name: 'NumberOfBytes', kind: 'integer', isRequired: false, min: 1, max: 1024 },
      { name: 'Ratio', kind: 'number', isRequired: false },
      { name: 'Description', kind: 'string', isRequired: false, min: 0, max: 8192 },
      { name: 'EncryptionContext', kind: 'map', isRequired: false },
      { name: 'GrantTokens', kind: 'list', isRequired: false, max: 10 },
      { name: 'Tags', kind: 'json', isRequired: false },
      { name: 'Recipient', kind: 'json', isRequired: false },
    ]);
  });

  it('describes every registered operation, each with at least its required members', () => {
    const forms = operationForms(registry);
    assert.deepEqual(forms.map((f) => f.operation), [...registry.keys()]);
    const gdk = forms.find((f) => f.operation === 'GenerateDataKey')!;
    assert.deepEqual(gdk.fields.filter((f) => f.isRequired).map((f) => f.name), ['KeyId']);
    const encrypt = forms.find((f) => f.operation === 'Encrypt')!;
    assert.deepEqual(encrypt.fields.find((f) => f.name === 'Plaintext'), { name: 'Plaintext', kind: 'blob', isRequired: true, min: 1, max: 4096 });
  });
});
