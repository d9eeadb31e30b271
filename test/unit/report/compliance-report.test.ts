import assert from 'node:assert/strict';
import type { KeyObjectFacts } from '../../../src/hsm/hsm';
import { judge, type ComplianceReport } from '../../../src/report/compliance-report';
import { escapeHtml, renderReportHtml } from '../../../src/report/report-html';

const strong: KeyObjectFacts = {
  label: 'qkms/k/1/kek',
  id: '00',
  objectClass: 'CKO_SECRET_KEY',
  keyType: 'CKK_AES',
  flags: { CKA_SENSITIVE: true, CKA_ALWAYS_SENSITIVE: true, CKA_EXTRACTABLE: false, CKA_NEVER_EXTRACTABLE: true, CKA_LOCAL: true, CKA_PRIVATE: true, CKA_MODIFIABLE: false },
  allowedMechanisms: ['CKM_AES_GCM'],
};

const ref = { id: strong.id, label: strong.label };

describe('Compliance verdict', () => {
  it('passes a sensitive, never-extractable, locally generated object with no warnings', () => {
    assert.deepEqual(judge('kek', ref, [strong]), { role: 'kek', label: strong.label, id: strong.id, objects: [strong], failures: [], warnings: [] });
  });

  it('fails on each of the four properties and on CKA_EXTRACTABLE, naming the attribute', () => {
    for (const [flag, bad] of [['CKA_SENSITIVE', false], ['CKA_ALWAYS_SENSITIVE', false], ['CKA_NEVER_EXTRACTABLE', false], ['CKA_LOCAL', false], ['CKA_EXTRACTABLE', true]] as const) {
      const found = judge('kek', ref, [{ ...strong, flags: { ...strong.flags, [flag]: bad } }]);
      assert.deepEqual(found.failures, [`${flag} is ${String(bad)} (must be ${String(!bad)})`]);
    }
  });

  it('fails an attribute the token does not report, a missing object and a duplicated id', () => {
    const { CKA_LOCAL: _local, ...rest } = strong.flags;
    assert.deepEqual(judge('kek', ref, [{ ...strong, flags: rest }]).failures, ['CKA_LOCAL is not reported (must be true)']);
    assert.deepEqual(judge('kek', ref, []).failures, ['object missing from the token']);
    assert.deepEqual(judge('kek', ref, [strong, strong]).failures, ["2 objects carry this id: the key's material is ambiguous"]);
  });

  it('judges only the presence of a public key, and warns (without failing) on weaker hygiene', () => {
    assert.deepEqual(judge('public', { id: '01', label: 'p' }, [{ ...strong, objectClass: 'CKO_PUBLIC_KEY', flags: { CKA_LOCAL: true } }]).failures, []);
    const lax = judge('kek', ref, [{ ...strong, allowedMechanisms: null, flags: { ...strong.flags, CKA_PRIVATE: false, CKA_MODIFIABLE: true } }]);
    assert.deepEqual(lax.failures, []);
    assert.equal(lax.warnings.length, 3);
  });
});

describe('Compliance report HTML', () => {
  it('escapes the five HTML-significant characters', () => {
    assert.equal(escapeHtml(`<a href="x" title='y'>&</a>`), '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
  });

  it('renders user input as text only, in a page that loads nothing', () => {
    const evil = '<script>x()</script>';
    const report: ComplianceReport = {
      generatedAt: '2026-01-01T00:00:00.000Z',
      dataDir: `/data/${evil}`,
      token: { label: evil, module: 'm' },
      rule: 'rule',
      audit: { isIntact: true, records: 1, batches: 1, checkpoints: 0, anchoredSeq: 1, unanchoredRecords: 0, unfinishedBytes: 0 },
      summary: { keys: 1, passing: 1, failing: 0, isAuditIntact: true },
      orphanedObjects: [evil],
      keys: [
        {
          keyId: 'k" onmouseover="x()',
          keyArn: 'arn',
          region: 'us-east-1',
          description: evil,
          keySpec: 'SYMMETRIC_DEFAULT',
          keyUsage: 'ENCRYPT_DECRYPT',
          state: 'Enabled',
          origin: 'AWS_KMS',
          createdAt: 'c',
          tags: [{ key: evil, value: evil }],
          aliases: [`alias/${evil}`],
          policy: evil,
          grants: [{ grantId: 'g', keyId: 'k', name: evil, granteePrincipal: 'p', issuingAccount: 'a', operations: ['Decrypt'], createdAt: 'c' }],
          materials: [{ version: 1, materialId: 'm', createdAt: 'c', rotationType: 'ORIGINAL', isCurrent: true, objects: [judge('kek', { id: evil, label: evil }, [{ ...strong, label: evil, id: evil }])] }],
          verdict: { neverLeftHsm: true, failures: [] },
        },
      ],
    };
    const page = renderReportHtml(report);
    assert.ok(!page.includes('<script'), 'no script element');
    assert.ok(!page.includes('" onmouseover'), 'no attribute injection through the key id');
    assert.ok(page.split('&lt;script&gt;x()&lt;/script&gt;').length - 1 >= 8, 'every field is shown escaped');
    assert.match(page, /default-src 'none'/);
    assert.ok(!/<link|src=/.test(page));
  });
});
