import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PrincipalStore } from '../../../src/auth/principals';
import { createLogger } from '../../../src/logging/logger';

const ADMIN = { accessKeyId: 'AKIAQKMSADMIN000001', secretAccessKey: 'admin-secret-0123456789', principalArn: 'arn:aws:iam::111122223333:root' };
const principal = (name: string) => ({ accessKeyId: `AKIAQKMS${name.toUpperCase().padEnd(11, '0')}`, secretAccessKey: `${name}-secret-0123456789`, principalArn: `arn:aws:iam::111122223333:user/${name}` });

describe('PrincipalStore and its credentials file', () => {
  let dir: string;
  let file: string;
  let store: PrincipalStore | undefined;
  const write = (text: string) => fs.writeFileSync(file, text);
  const writePrincipals = (...names: string[]) => write(JSON.stringify({ principals: names.map(principal) }));
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-principals-'));
    file = path.join(dir, 'credentials.json');
  });
  afterEach(() => {
    store?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('loads a new version while idle, so a later broken version leaves every replica on the same principals', async function () {
    this.timeout(5000);
    writePrincipals('alice');
    store = new PrincipalStore(ADMIN, file, createLogger({ level: 'error', silent: true }));
    writePrincipals('alice', 'bob'); // no request comes while this version stands
    await new Promise((r) => setTimeout(r, 1300));
    write('{"principals": [ broken');
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(store.lookup(principal('bob').accessKeyId)?.principalArn, principal('bob').principalArn);
  });
});
