import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import YAML from 'yaml';

/**
 * The Kubernetes release whose OpenAPI schema kubernetes-models 5.1.0 (a devDependency) was
 * generated from: its CHANGELOG for 5.0.0 says "Update to Kubernetes v1.36.0", and 5.x changed
 * nothing in the schemas since.
 */
export const KUBERNETES_SCHEMA_VERSION = '1.36.0';

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

const ROOT = path.resolve(__dirname, '../..');
export const MANIFESTS_DIR = path.join(ROOT, 'deploy/kubernetes');

/** deploy/kubernetes's objects by file name (kustomization.yaml is kustomize's, not an object). */
export function loadManifests(): Record<string, Manifest> {
  const files = fs.readdirSync(MANIFESTS_DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
  return Object.fromEntries(files.map((f) => [f, YAML.parse(fs.readFileSync(path.join(MANIFESTS_DIR, f), 'utf8')) as Manifest]));
}

/** The one object of this kind (YAML-parsed, so loosely typed). */
export const byKind = (manifests: Record<string, Manifest>, kind: string): any => Object.values(manifests).find((m) => m.kind === kind);

/**
 * What the Kubernetes schema says is wrong with a manifest: types, required fields, enums, formats
 * and patterns, by kubernetes-models' validators (ajv, generated from the Kubernetes OpenAPI
 * document). An apiVersion/kind it does not know, or one that is not GA, is a problem too.
 */
export async function schemaProblems(m: Manifest): Promise<string[]> {
  // The package also holds the schemas of versions removed since (extensions/v1beta1 and the
  // like); a GA version is never removed within Kubernetes 1.x (its deprecation policy).
  if (!/^([a-z0-9.-]+\/)?v\d+$/.test(m.apiVersion)) return [`${m.kind}/${m.metadata.name}: ${m.apiVersion} is not a GA API version`];
  let Model: new (data: unknown) => { validate(): void };
  try {
    Model = (await import(`kubernetes-models/${m.apiVersion}/${m.kind}`))[m.kind];
  } catch {
    return [`${m.kind}/${m.metadata.name}: no ${m.apiVersion} ${m.kind} in the Kubernetes ${KUBERNETES_SCHEMA_VERSION} schema`];
  }
  try {
    new Model(m).validate();
    return [];
  } catch (err) {
    return [`${m.kind}/${m.metadata.name}: ${(err as Error).message}`];
  }
}

/**
 * Fields the schema does not have (a typo such as `enableServiceLink`), which the validators above
 * let through, as the OpenAPI document does not close its objects; the API server refuses them
 * (kubectl's default --validate=strict). Found by TypeScript's excess-property check of each
 * manifest against the same package's type of its kind, in memory: one program for all of them.
 */
export function unknownFields(manifests: Manifest[]): string[] {
  const file = path.join(ROOT, 'deploy', '__manifests-check.ts');
  const source = manifests
    .map((m, i) => `import type { I${m.kind} as T${i} } from 'kubernetes-models/${m.apiVersion}/${m.kind}';\nexport const m${i}: T${i} = ${JSON.stringify(m)};`)
    .join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    lib: ['lib.es2022.d.ts'],
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists } = host;
  host.getSourceFile = (name, language, ...rest) => (name === file ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest));
  host.fileExists = (name) => name === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    const m = manifests[Math.floor(line / 2)];
    return `${m ? `${m.kind}/${m.metadata.name}: ` : ''}${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
}
