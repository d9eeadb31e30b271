import fs from 'node:fs';
import path from 'node:path';

/** The parts of a pod spec this file reads (YAML-parsed, so loosely typed). */
export interface PodSpec {
  enableServiceLinks?: boolean;
  containers: any[];
  volumes?: any[];
}

export interface PodInputs {
  configMaps: Record<string, Record<string, string>>;
  secrets: Record<string, Record<string, string>>;
  /** metadata.name, for the downward API. */
  podName: string;
  /** Lay the container's volumes out under this directory (Secrets as files, emptyDirs as directories) and point the settings that name a file in one at it. */
  volumesUnder?: string;
  /** What the hsm-client init container would have copied: linked where QKMS_PKCS11_MODULE names it. */
  hsmModule?: string;
  /** The service-link variables the kubelet would add (enableServiceLinks not false). */
  serviceLinks?: Record<string, string>;
}

/**
 * The first container's environment as the kubelet builds it (pkg/kubelet/kubelet_pods.go
 * makeEnvironmentVariables): envFrom, then env over it, then the service links for names neither set.
 */
export function podEnvironment(pod: PodSpec, inputs: PodInputs): Record<string, string> {
  const [container] = pod.containers;
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) Object.assign(env, required(inputs.configMaps, from.configMapRef.name, 'ConfigMap'));
  for (const e of container.env ?? []) env[e.name] = valueOf(e, inputs);
  for (const [k, v] of Object.entries(inputs.serviceLinks ?? {})) env[k] ??= v;
  if (!inputs.volumesUnder) return env;
  const root = inputs.volumesUnder;
  const mounts: string[] = [];
  for (const mount of container.volumeMounts ?? []) {
    const volume = pod.volumes?.find((v) => v.name === mount.name);
    const dir = path.join(root, mount.mountPath);
    fs.mkdirSync(dir, { recursive: true });
    for (const item of volume?.secret?.items ?? []) {
      fs.writeFileSync(path.join(dir, item.path), required(inputs.secrets, volume.secret.secretName, 'Secret')[item.key], { mode: volume.secret.defaultMode ?? 0o644 });
    }
    mounts.push(mount.mountPath);
  }
  if (inputs.hsmModule && env.QKMS_PKCS11_MODULE) {
    fs.mkdirSync(path.dirname(path.join(root, env.QKMS_PKCS11_MODULE)), { recursive: true });
    fs.symlinkSync(inputs.hsmModule, path.join(root, env.QKMS_PKCS11_MODULE));
  }
  for (const [k, v] of Object.entries(env)) {
    if (mounts.some((m) => v === m || v.startsWith(`${m}/`))) env[k] = path.join(root, v);
  }
  return env;
}

function valueOf(e: any, inputs: PodInputs): string {
  if (e.value !== undefined) return e.value;
  const { secretKeyRef, configMapKeyRef, fieldRef } = e.valueFrom ?? {};
  if (secretKeyRef) return keyOf(required(inputs.secrets, secretKeyRef.name, 'Secret'), secretKeyRef.key, secretKeyRef.name);
  if (configMapKeyRef) return keyOf(required(inputs.configMaps, configMapKeyRef.name, 'ConfigMap'), configMapKeyRef.key, configMapKeyRef.name);
  if (fieldRef?.fieldPath === 'metadata.name') return inputs.podName;
  throw new Error(`${e.name}: a source this test does not model`);
}

function required<T>(objects: Record<string, T>, name: string, kind: string): T {
  if (!(name in objects)) throw new Error(`the pod needs ${kind} ${name}, which the test did not give`);
  return objects[name];
}

function keyOf(data: Record<string, string>, key: string, name: string): string {
  if (!(key in data)) throw new Error(`the pod needs key ${key} of ${name}`);
  return data[key];
}

/**
 * The variables a pod gets for a ClusterIP Service (pkg/kubelet/envvars/envvars.go FromServices):
 * <NAME>_SERVICE_HOST, _SERVICE_PORT (the first port), _SERVICE_PORT_<PORT NAME>, <NAME>_PORT (the
 * first port as a URL) and <NAME>_PORT_<port>_<PROTO> with _PROTO, _PORT and _ADDR for each port.
 */
export function serviceLinksOf(service: { metadata: { name: string }; spec: { ports: Array<{ name?: string; port: number; protocol?: string }> } }, clusterIp: string): Record<string, string> {
  const name = service.metadata.name.toUpperCase().replace(/-/g, '_');
  const ports = service.spec.ports;
  const proto = (p: { protocol?: string }) => p.protocol ?? 'TCP';
  const url = (p: { port: number; protocol?: string }) => `${proto(p).toLowerCase()}://${clusterIp}:${p.port}`;
  const env: Record<string, string> = { [`${name}_SERVICE_HOST`]: clusterIp, [`${name}_SERVICE_PORT`]: String(ports[0].port), [`${name}_PORT`]: url(ports[0]) };
  for (const p of ports) {
    if (p.name) env[`${name}_SERVICE_PORT_${p.name.toUpperCase().replace(/-/g, '_')}`] = String(p.port);
    const base = `${name}_PORT_${p.port}_${proto(p)}`;
    Object.assign(env, { [base]: url(p), [`${base}_PROTO`]: proto(p).toLowerCase(), [`${base}_PORT`]: String(p.port), [`${base}_ADDR`]: clusterIp });
  }
  return env;
}
