import { byId } from './dom';
import type { OperationForm } from './forms';
import type { Credentials } from './kms-call';
import { KmsCallError } from './kms-call';
import { loadKeys, showKeys } from './keys';
import { setUpTester } from './tester';

/**
 * The console page. The signed-in credentials live in this closure only — not in storage, not in
 * a cookie, not in the URL — and are dropped on sign-out or reload.
 */
let session: { credentials: Credentials; region: string } | undefined;
/** Redraws the Try It Out panel empty. */
let resetTester = (): void => undefined;

async function start(): Promise<void> {
  const response = await fetch('operations.json', { cache: 'no-store' });
  const { region, operations } = (await response.json()) as { region: string; operations: OperationForm[] };
  byId('region').textContent = region;
  resetTester = setUpTester(operations, () => session);
  byId('sign-in-form').addEventListener('submit', (event) => {
    event.preventDefault();
    void signIn(region);
  });
  byId('sign-out').addEventListener('click', signOut);
  byId('refresh-keys').addEventListener('click', () => void refreshKeys());
}

async function signIn(region: string): Promise<void> {
  const id = byId<HTMLInputElement>('access-key-id');
  const secret = byId<HTMLInputElement>('secret-access-key');
  const credentials = { accessKeyId: id.value.trim(), secretAccessKey: secret.value };
  byId('sign-in-error').textContent = '';
  try {
    // The first ListKeys proves the pair: a wrong secret is the gateway's InvalidSignatureException.
    showKeys(await loadKeys(credentials, region));
  } catch (err) {
    byId('sign-in-error').textContent = describe(err);
    return;
  }
  session = { credentials, region };
  secret.value = '';
  byId('signed-in-as').textContent = credentials.accessKeyId;
  document.body.classList.add('signed-in');
}

function signOut(): void {
  session = undefined;
  byId('keys-body').replaceChildren();
  byId('key-ids').replaceChildren();
  resetTester();
  document.body.classList.remove('signed-in');
}

async function refreshKeys(): Promise<void> {
  if (!session) return;
  byId('keys-error').textContent = '';
  try {
    showKeys(await loadKeys(session.credentials, session.region));
  } catch (err) {
    byId('keys-error').textContent = describe(err);
  }
}

function describe(err: unknown): string {
  if (err instanceof KmsCallError) return `${err.kms.type}: ${err.kms.message}`;
  return err instanceof Error ? err.message : String(err);
}

start().catch((err: unknown) => {
  byId('sign-in-error').textContent = `The console could not start: ${describe(err)}`;
});
