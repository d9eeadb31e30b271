import { byId, el } from './dom';
import { type Credentials, kmsCall, paginate } from './kms-call';

interface KeyRow {
  keyId: string;
  aliases: string[];
  state: string;
  keySpec: string;
  keyUsage: string;
  rotation: string;
  description: string;
}

/**
 * Every key with its aliases, state, spec and rotation: ListKeys and ListAliases (all pages),
 * then DescribeKey and, for symmetric encryption keys, GetKeyRotationStatus per key — the calls
 * a script would make, with the caller's own permissions.
 */
export async function loadKeys(credentials: Credentials, region: string): Promise<KeyRow[]> {
  const keys = await paginate<{ KeyId: string }>(credentials, region, 'ListKeys', 'Keys');
  // A caller may list keys but not aliases (key policies): the table then lacks them, no more.
  const aliases = await paginate<{ AliasName: string; TargetKeyId?: string }>(credentials, region, 'ListAliases', 'Aliases').catch(() => []);
  const rows: KeyRow[] = [];
  for (const { KeyId } of keys) {
    rows.push(await keyRow(credentials, region, KeyId, aliases.filter((a) => a.TargetKeyId === KeyId).map((a) => a.AliasName)));
  }
  return rows;
}

async function keyRow(credentials: Credentials, region: string, keyId: string, aliases: string[]): Promise<KeyRow> {
  const described = await kmsCall(credentials, region, 'DescribeKey', { KeyId: keyId });
  const m = (described.json?.KeyMetadata ?? {}) as Record<string, unknown>;
  // A key the caller may not describe shows the refusal (e.g. AccessDeniedException) as its state.
  const row = { keyId, aliases, state: described.error?.type ?? String(m.KeyState ?? ''), keySpec: String(m.KeySpec ?? ''), keyUsage: String(m.KeyUsage ?? ''), rotation: 'n/a', description: String(m.Description ?? '') };
  // Only symmetric encryption keys rotate (AWS: GetKeyRotationStatus); asking about others is an error.
  if (row.keySpec === 'SYMMETRIC_DEFAULT' && row.state !== 'PendingDeletion') {
    const status = await kmsCall(credentials, region, 'GetKeyRotationStatus', { KeyId: keyId });
    row.rotation = status.error ? status.error.type : status.json?.KeyRotationEnabled ? 'enabled' : 'disabled';
  }
  return row;
}

/** Fills the keys table and the KeyId suggestions of the forms; a click on a row picks its key. */
export function showKeys(rows: KeyRow[]): void {
  const body = byId('keys-body');
  body.replaceChildren(
    ...rows.map((r) =>
      el(
        'tr',
        { 'data-key-id': r.keyId, title: 'Use this key in Try It Out' },
        el('td', { class: 'mono id', title: r.keyId }, r.keyId),
        el('td', {}, ...r.aliases.flatMap((a, i) => [i > 0 ? ', ' : '', el('span', { class: 'id', title: a }, a)])),
        el('td', { class: `state state-${r.state}` }, r.state),
        el('td', {}, r.keySpec),
        el('td', {}, r.keyUsage),
        el('td', {}, r.rotation),
        el('td', {}, r.description),
      ),
    ),
  );
  byId('keys-empty').hidden = rows.length > 0;
  body.onclick = (event) => {
    const keyId = (event.target as HTMLElement).closest('tr')?.dataset.keyId;
    if (keyId) pickKey(keyId);
  };
  byId('key-ids').replaceChildren(...rows.flatMap((r) => [r.keyId, ...r.aliases]).map((v) => el('option', { value: v })));
}

/** Puts a listed key into the form's KeyId and says so: the form may be out of sight (a narrow screen). */
function pickKey(keyId: string): void {
  const input = document.querySelector<HTMLInputElement>('#field-KeyId');
  const status = byId('key-status');
  if (!input) {
    status.textContent = `${byId<HTMLSelectElement>('operation').value} takes no KeyId: choose another operation in Try It Out, then click the key again.`;
    return;
  }
  input.value = keyId;
  status.replaceChildren('KeyId set to ', el('code', { class: 'id' }, keyId), ' from the key list (Try It Out, below).');
}
