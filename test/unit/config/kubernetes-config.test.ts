import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../../src/config/load-config';
import { serviceLinksOf } from '../../support/kubernetes-pod';

/** What a pod gets for a Service `name` with these ports when enableServiceLinks is not false. */
const serviceLinks = (name: string, ip: string, ports: Array<{ name?: string; port: number; protocol?: string }>) => serviceLinksOf({ metadata: { name }, spec: { ports } }, ip);

/** The variables a service-link message names, sorted. */
function namesIn(problem: string): string[] {
  return problem.split(': not QKMS settings')[0].split(', ').sort();
}

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  assert.fail('expected a ConfigError');
}

describe('Configuration under Kubernetes', () => {
  describe('service-link variables', () => {
    it('names the Service a qkms one injects and the two ways out, instead of "not allowed" and "must be a number"', () => {
      const links = serviceLinks('qkms', '10.96.0.11', [{ name: 'https', port: 443 }]);
      const problems = problemsOf(links);
      assert.equal(problems.length, 1, problems.join('\n'));
      assert.deepEqual(namesIn(problems[0]), Object.keys(links).map((k) => (k === 'QKMS_PORT' || k === 'QKMS_PORT_443_TCP' ? `${k}=tcp://10.96.0.11:443` : k)).sort());
      assert.match(problems[0], /: not QKMS settings but the variables Kubernetes gives every pod for a Service named qkms \(service links\); set enableServiceLinks: false in the pod spec .* or rename the Service/);
    });

    it('recognises a qkms-<x> Service (one of whose variables is QKMS_PROBE_PORT=tcp://…), UDP ports, and unnamed ports; other problems stay as they were', () => {
      const env: Record<string, string> = {
        ...serviceLinks('qkms-probe', '10.96.0.12', [{ port: 8081 }, { name: 'dns', port: 53, protocol: 'UDP' }]),
        ...serviceLinks('qkms', '10.96.0.11', [{ port: 8443 }]),
        QKMS_ACCOUNT_ID: '12',
        QKMS_SERVISE_HOST: 'typo',
      };
      const problems = problemsOf(env);
      assert.equal(problems.length, 4, problems.join('\n'));
      const probe = problems.find((p) => /Service named qkms-probe /.test(p)) ?? '';
      assert.deepEqual(namesIn(probe), Object.keys(serviceLinks('qkms-probe', '', [{ port: 8081 }, { name: 'dns', port: 53, protocol: 'UDP' }])).map((k) => (env[k].includes('://') ? `${k}=${env[k]}` : k)).sort());
      assert.ok(namesIn(probe).includes('QKMS_PROBE_PORT=tcp://10.96.0.12:8081') && namesIn(probe).includes('QKMS_PROBE_PORT_53_UDP=udp://10.96.0.12:53'));
      assert.ok(problems.some((p) => /^QKMS_.*: not QKMS settings but .* Service named qkms \(/.test(p)));
      assert.ok(problems.includes('QKMS_ACCOUNT_ID with value "12" fails to match the required pattern: /^\\d{12}$/'), problems.join('\n'));
      assert.ok(problems.includes('QKMS_SERVISE_HOST is not allowed'), 'a typo is still a typo');
    });

    it('leaves a QKMS_PORT that is no URL to the schema', () => {
      assert.deepEqual(problemsOf({ QKMS_PORT: 'tcp' }), ['QKMS_PORT must be a number']);
    });

    it('is not needed when the pod spec turns service links off: the same settings load', () => {
      assert.equal(loadConfig({ QKMS_PORT: '8443' }).port, 8443);
    });
  });

  describe('QKMS_PROBE_PORT', () => {
    it('is off unless set; its host defaults to QKMS_HOST', () => {
      assert.equal(loadConfig({}).probe, undefined);
      assert.deepEqual(loadConfig({ QKMS_PROBE_PORT: '8081', QKMS_HOST: '0.0.0.0', QKMS_ACCESS_KEY_ID: 'AKIAEXAMPLEEXAMPLE01', QKMS_SECRET_ACCESS_KEY: 'an-example-secret-of-16+' }).probe, { port: 8081, host: '0.0.0.0' });
      assert.deepEqual(loadConfig({ QKMS_PROBE_PORT: '8081', QKMS_PROBE_HOST: '127.0.0.2' }).probe, { port: 8081, host: '127.0.0.2' });
    });

    it('refuses the KMS port, a port out of range, and a probe host without a port', () => {
      assert.deepEqual(problemsOf({ QKMS_PORT: '8443', QKMS_PROBE_PORT: '8443' }), ['QKMS_PROBE_PORT (8443) must differ from QKMS_PORT: the probe listener is a second, plain-HTTP port beside the KMS one']);
      assert.deepEqual(problemsOf({ QKMS_PROBE_PORT: '70000' }), ['QKMS_PROBE_PORT must be less than or equal to 65535']);
      assert.deepEqual(problemsOf({ QKMS_PROBE_HOST: '0.0.0.0' }), ['QKMS_PROBE_HOST missing required peer "QKMS_PROBE_PORT"']);
      assert.equal(loadConfig({ QKMS_PORT: '0', QKMS_PROBE_PORT: '0' }).probe?.port, 0, 'two "any free port"s are two ports');
    });
  });
});
