/**
 * Kubernetes hands every pod, for every Service of its namespace, Docker-link variables named
 * after the Service, unless the pod spec says `enableServiceLinks: false`. A Service `qkms` with
 * port 443 named https gives QKMS_SERVICE_HOST=10.0.0.11, QKMS_SERVICE_PORT=443,
 * QKMS_SERVICE_PORT_HTTPS=443, QKMS_PORT=tcp://10.0.0.11:443, QKMS_PORT_443_TCP=tcp://10.0.0.11:443
 * and QKMS_PORT_443_TCP_PROTO, _PORT and _ADDR; a Service `qkms-probe` gives QKMS_PROBE_SERVICE_HOST,
 * QKMS_PROBE_PORT=tcp://… and so on. They land under our prefix, where unknown names are refused
 * (typos), so the operator is told where they come from rather than "not allowed".
 */
const LINK_NAME = /^QKMS((?:_[A-Z0-9]+)*?)_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)$/;
/** `<SERVICE>_PORT` holds the first port as a URL: the one shape that is also a setting's name (QKMS_PORT). */
const LINK_PORT = /^QKMS((?:_[A-Z0-9]+)*?)_PORT$/;
const LINK_URL = /^(tcp|udp|sctp):\/\/[^/\s]+:\d+$/;

/** One schema complaint: the variable it is about and what is wrong with it. */
export interface SettingProblem {
  key: string;
  message: string;
}

/**
 * The problems as the operator should read them: those about service-link variables become one
 * message naming the variables, the Service they come from and the two ways out; the rest as given.
 */
export function explainServiceLinks(env: Record<string, string | undefined>, problems: SettingProblem[]): string[] {
  const services = new Map<string, string[]>();
  const others: string[] = [];
  for (const p of problems) {
    const service = serviceOf(p.key, env[p.key]);
    if (service === undefined) others.push(p.message);
    else services.set(service, [...(services.get(service) ?? []), LINK_URL.test(env[p.key] ?? '') ? `${p.key}=${env[p.key]}` : p.key]);
  }
  const explained = [...services].map(
    ([service, names]) =>
      `${names.sort().join(', ')}: not QKMS settings but the variables Kubernetes gives every pod for a Service named ${service} (service links); set enableServiceLinks: false in the pod spec (deploy/kubernetes does) or rename the Service so that its name does not start with qkms`,
  );
  return [...explained, ...others];
}

/** The name of the Service a variable would come from, or undefined when it has no service-link shape. */
function serviceOf(name: string, value: string | undefined): string | undefined {
  const link = LINK_NAME.exec(name) ?? (value !== undefined && LINK_URL.test(value) ? LINK_PORT.exec(name) : null);
  return link ? `qkms${link[1].toLowerCase().replace(/_/g, '-')}` : undefined;
}
