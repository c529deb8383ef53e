/**
 * The instance metadata service and the EC2 API of the end-to-end test's "instance", started in
 * the container's network namespace (nsenter -n) from this checkout: IMDS where EC2 has it,
 * 169.254.169.254:80 (added to the container's loopback), so the agent uses its default endpoint;
 * EC2 on 127.0.0.1, named by the bootstrap's --ec2-endpoint. Prints one JSON line with the EC2
 * URL when both listen; stops on SIGTERM.
 *
 * Usage: node --import tsx test/e2e/aws-standins.ts ELASTIC_IP
 */
import { FakeEc2, referenceWorld } from '../support/ec2-server.js';
import { FakeImds } from '../support/imds-server.js';

const eip = process.argv[2] ?? '203.0.113.10';
const imds = new FakeImds({
  instance: { publicIpv4: eip },
  role: { name: 'pbx-agent', accessKeyId: 'AKIDE2ELOOPBACK', secretAccessKey: 'e2e-loopback-secret', token: 'e2e-session-token' },
});
const ec2 = new FakeEc2(referenceWorld(eip));
await imds.start({ host: '169.254.169.254', port: 80 });
await ec2.start();
process.stdout.write(`${JSON.stringify({ imds: imds.url, ec2: ec2.url })}\n`);
const stop = () => void Promise.all([imds.stop(), ec2.stop()]).then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
