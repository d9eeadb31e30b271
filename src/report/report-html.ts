import { describeVerification } from '../audit/audit-verify';
import type { ComplianceReport, KeyReport, ObjectFinding } from './compliance-report';

/** Markup already escaped; anything else interpolated into `html` is escaped. */
class Html {
  constructor(readonly text: string) {}
}

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/**
 * Tagged template that escapes every interpolated value unless it is Html, so user input
 * (descriptions, tags, policies, grant names) cannot become markup by forgetting a call.
 */
function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  const part = (v: unknown): string => (v instanceof Html ? v.text : Array.isArray(v) ? v.map(part).join('') : v === undefined || v === null ? '' : escapeHtml(String(v)));
  return new Html(strings.reduce((out, s, i) => out + s + (i < values.length ? part(values[i]) : ''), ''));
}

// Self-contained (no external CSS, script or font) and, should escaping ever fail, the CSP still
// forbids every script: default-src 'none'.
const STYLE = `body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}th{background:#f3f3f3}
.pass{color:#0a6b2d;font-weight:bold}.fail{color:#b00020;font-weight:bold}.warn{color:#8a5a00}
pre{background:#f7f7f7;padding:6px;white-space:pre-wrap;word-break:break-all;max-width:100em}section.key{border-top:2px solid #888;margin-top:2em}`;

export function renderReportHtml(r: ComplianceReport): string {
  const audit = 'error' in r.audit ? html`<span class="fail">could not be verified: ${r.audit.error}</span>` : auditLine(r.audit);
  return html`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>QKMS compliance report ${r.generatedAt}</title><style>${new Html(STYLE)}</style></head>
<body>
<h1>QKMS compliance report</h1>
<table>
<tr><th>Generated</th><td>${r.generatedAt}</td></tr>
<tr><th>Data directory</th><td>${r.dataDir}</td></tr>
<tr><th>Token</th><td>${r.token.label} (module ${r.token.module})</td></tr>
<tr><th>Keys</th><td>${r.summary.keys}: <span class="pass">${r.summary.passing} pass</span>, <span class="${r.summary.failing > 0 ? 'fail' : 'pass'}">${r.summary.failing} fail</span></td></tr>
<tr><th>Audit trail</th><td>${audit}</td></tr>
<tr><th>Orphaned token objects</th><td>${r.orphanedObjects.length === 0 ? 'none' : r.orphanedObjects.join(', ')}</td></tr>
</table>
<p><b>Rule.</b> ${r.rule}</p>
<h2>Keys</h2>
<table><tr><th>Key</th><th>State</th><th>Spec</th><th>Verdict</th></tr>
${r.keys.map((k) => html`<tr><td><a href="#${k.keyId}">${k.keyId}</a></td><td>${k.state}</td><td>${k.keySpec}</td><td>${verdict(k)}</td></tr>`)}
</table>
${r.keys.map(keySection)}
</body></html>
`.text;
}

function auditLine(a: Extract<ComplianceReport['audit'], { isIntact: boolean }>): Html {
  const text = describeVerification(a);
  if (a.isIntact) return html`<span class="pass">intact</span>: ${text.replace(/^audit trail intact: /, '')}`;
  return html`<span class="fail">TAMPERED</span>: ${text.replace(/^AUDIT TRAIL TAMPERED: /, '')}`;
}

function verdict(k: KeyReport): Html {
  return k.verdict.neverLeftHsm ? html`<span class="pass">PASS</span>` : html`<span class="fail">FAIL</span>`;
}

function keySection(k: KeyReport): Html {
  return html`<section class="key" id="${k.keyId}">
<h3>${k.keyId} — ${verdict(k)}</h3>
${k.verdict.failures.length > 0 ? html`<ul>${k.verdict.failures.map((f) => html`<li class="fail">${f}</li>`)}</ul>` : html`<p class="pass">Key material never left the HSM.</p>`}
<table>
<tr><th>ARN</th><td>${k.keyArn}</td></tr>
<tr><th>Description</th><td>${k.description}</td></tr>
<tr><th>Spec / usage / origin</th><td>${k.keySpec} / ${k.keyUsage} / ${k.origin}</td></tr>
<tr><th>State</th><td>${k.state}${k.deletionDate ? html` (deletion on ${k.deletionDate})` : ''}</td></tr>
<tr><th>Created</th><td>${k.createdAt}</td></tr>
<tr><th>Automatic rotation</th><td>${k.rotation ? html`every ${k.rotation.periodDays} days, next ${k.rotation.nextRotationDate}` : 'off'}</td></tr>
<tr><th>Aliases</th><td>${k.aliases.join(', ') || 'none'}</td></tr>
<tr><th>Tags</th><td>${k.tags.length === 0 ? 'none' : k.tags.map((t) => html`${t.key} = ${t.value}<br>`)}</td></tr>
</table>
<h4>Material versions (rotation history)</h4>
${k.materials.map((m) => html`<p><b>Version ${m.version}</b>${m.isCurrent ? ' (current)' : ''}: ${m.rotationType}, created ${m.createdAt}, material id ${m.materialId}</p>${m.objects.map(objectTable)}`)}
<h4>Key policy</h4>
${k.policy === undefined ? html`<p>default key policy</p>` : html`<pre>${k.policy}</pre>`}
<h4>Grants</h4>
${k.grants.length === 0 ? html`<p>none</p>` : html`<pre>${JSON.stringify(k.grants, null, 2)}</pre>`}
</section>
`;
}

function objectTable(o: ObjectFinding): Html {
  const rows = o.objects.map(
    (f) => html`<tr><td>${f.objectClass}</td><td>${f.keyType}${f.sizeBits ? ` ${f.sizeBits} bits` : ''}${f.curve ? ` ${f.curve}` : ''}</td>
<td>${Object.entries(f.flags).map(([n, v]) => html`${n}=${String(v)}<br>`)}</td><td>${f.allowedMechanisms?.join(', ') ?? 'unrestricted'}</td><td>${f.keyGenMechanism ?? ''}</td><td>${f.id}</td></tr>`,
  );
  return html`<table><tr><th colspan="6">${o.role}: ${o.label}
${o.failures.map((f) => html`<br><span class="fail">${f}</span>`)}${o.warnings.map((w) => html`<br><span class="warn">${w}</span>`)}</th></tr>
<tr><th>Class</th><th>Type</th><th>Attributes</th><th>Allowed mechanisms</th><th>Generated with</th><th>CKA_ID (hex)</th></tr>${rows}</table>`;
}
