/**
 * The EC2 worker: a short-lived child process, and the only file that imports
 * @aws-sdk/client-ec2 (about 100 MB of RSS, which must not stay in the daemon). ec2.ts spawns it,
 * writes one Ec2WorkerInput as JSON to its stdin, and reads one Ec2WorkerOutput line from its
 * stdout; then the process exits and its memory goes back to the system.
 *
 * Only Describe* calls. Credentials come from the SDK's default chain (on EC2: the instance
 * role, through IMDSv2). Throttling and transient failures are retried here with exponential
 * backoff and jitter; the SDK's own retries are off so that every attempt is counted.
 */
import type {
  Ec2Action,
  Ec2Call,
  Ec2ErrorInfo,
  Ec2ErrorKind,
  Ec2WorkerInput,
  Ec2WorkerOutput,
  ElasticAddress,
  IngressRule,
  InstanceDescription,
  SecurityGroupFacts,
} from './ec2-protocol.js';

const THROTTLING = new Set(['RequestLimitExceeded', 'Throttling', 'ThrottlingException', 'TooManyRequestsException', 'RequestThrottled', 'SlowDown']);
const DENIED = new Set(['UnauthorizedOperation', 'AccessDenied', 'AccessDeniedException', 'Blocked']);
const AUTH = new Set(['AuthFailure', 'InvalidClientTokenId', 'SignatureDoesNotMatch', 'UnrecognizedClientException', 'ExpiredToken', 'RequestExpired', 'OptInRequired']);
const TRANSIENT = new Set(['InternalError', 'InternalFailure', 'ServiceUnavailable', 'Unavailable']);
/** Errors without an HTTP answer: nothing reached the endpoint, or it did not answer in time. */
const NETWORK = /^(E[A-Z_]+|TimeoutError|RequestTimeout)$/;

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function classify(e: unknown, action: Ec2Action): Ec2ErrorInfo & { retry: boolean; throttle: boolean } {
  const err = (e ?? {}) as SdkError;
  const code = err.name && err.name !== 'Error' ? err.name : (err.code ?? 'Error');
  const status = err.$metadata?.httpStatusCode;
  let kind: Ec2ErrorKind = 'other';
  let retry = false;
  let throttle = false;
  if (THROTTLING.has(code) || status === 429) {
    kind = 'throttled';
    retry = throttle = true;
  } else if (DENIED.has(code)) kind = 'access_denied';
  else if (AUTH.has(code)) kind = 'auth';
  else if (code === 'CredentialsProviderError' || /could not load credentials/i.test(err.message ?? '')) kind = 'credentials';
  else if (status === undefined && (NETWORK.test(code) || NETWORK.test(err.code ?? ''))) {
    kind = 'network';
    retry = true;
  } else if (TRANSIENT.has(code) || (status !== undefined && status >= 500)) retry = true;
  const info: Ec2ErrorInfo & { retry: boolean; throttle: boolean } = {
    kind,
    code,
    message: (err.message ?? String(e)).slice(0, 500),
    action,
    iamAction: `ec2:${action}`,
    retry,
    throttle,
  };
  if (status !== undefined) info.httpStatus = status;
  return info;
}

async function call<T>(input: Ec2WorkerInput, action: Ec2Action, fn: () => Promise<T>): Promise<Ec2Call<T>> {
  let throttled = 0;
  for (let attempt = 1; ; attempt++) {
    try {
      return { ok: true, value: await fn(), attempts: attempt, throttled };
    } catch (e) {
      const { retry, throttle, ...error } = classify(e, action);
      if (throttle) throttled++;
      if (!retry || attempt >= input.maxAttempts) return { ok: false, error, attempts: attempt, throttled };
      // Exponential backoff with jitter: base * 2^(n-1), between half and all of it.
      const cap = Math.min(input.maxDelayMs, input.baseDelayMs * 2 ** (attempt - 1));
      await new Promise((r) => setTimeout(r, cap / 2 + Math.random() * (cap / 2)));
    }
  }
}

const strings = (xs: Array<string | undefined> | undefined): string[] => (xs ?? []).filter((x): x is string => typeof x === 'string').sort();

async function describe(input: Ec2WorkerInput): Promise<Ec2WorkerOutput> {
  const t0 = performance.now();
  const sdk = await import('@aws-sdk/client-ec2');
  const sdkImportMs = performance.now() - t0;
  const client = new sdk.EC2Client({
    region: input.region,
    ...(input.endpoint ? { endpoint: input.endpoint } : {}),
    maxAttempts: 1,
    requestHandler: { requestTimeout: input.requestTimeoutMs, connectionTimeout: input.requestTimeoutMs },
  });
  const t1 = performance.now();
  try {
    const addressesP = call(input, 'DescribeAddresses', async (): Promise<ElasticAddress[]> => {
      const out = await client.send(new sdk.DescribeAddressesCommand({ Filters: [{ Name: 'instance-id', Values: [input.instanceId] }] }));
      return (out.Addresses ?? [])
        .filter((a) => a.PublicIp)
        .map((a) => {
          const r: ElasticAddress = { publicIp: a.PublicIp! };
          if (a.AllocationId) r.allocationId = a.AllocationId;
          if (a.AssociationId) r.associationId = a.AssociationId;
          if (a.InstanceId) r.instanceId = a.InstanceId;
          if (a.NetworkInterfaceId) r.networkInterfaceId = a.NetworkInterfaceId;
          if (a.PrivateIpAddress) r.privateIpAddress = a.PrivateIpAddress;
          return r;
        })
        .sort((a, b) => a.publicIp.localeCompare(b.publicIp));
    });

    let instance: Ec2Call<InstanceDescription> | undefined;
    let groupIds = input.securityGroupIds;
    if (groupIds.length === 0) {
      instance = await call(input, 'DescribeInstances', async (): Promise<InstanceDescription> => {
        const out = await client.send(new sdk.DescribeInstancesCommand({ InstanceIds: [input.instanceId] }));
        const i = out.Reservations?.flatMap((r) => r.Instances ?? []).find((x) => x.InstanceId === input.instanceId);
        if (!i) throw Object.assign(new Error(`DescribeInstances did not return ${input.instanceId}`), { name: 'InvalidInstanceID.NotFound' });
        const ids = new Set<string>();
        for (const g of i.SecurityGroups ?? []) if (g.GroupId) ids.add(g.GroupId);
        for (const ni of i.NetworkInterfaces ?? []) for (const g of ni.Groups ?? []) if (g.GroupId) ids.add(g.GroupId);
        const d: InstanceDescription = { instanceId: input.instanceId, securityGroupIds: [...ids].sort() };
        if (i.PublicIpAddress) d.publicIp = i.PublicIpAddress;
        if (i.PrivateIpAddress) d.privateIp = i.PrivateIpAddress;
        if (i.VpcId) d.vpcId = i.VpcId;
        return d;
      });
      groupIds = instance.ok ? instance.value.securityGroupIds : [];
    }

    let securityGroups: Ec2Call<SecurityGroupFacts[]> | undefined;
    if (groupIds.length > 0) {
      securityGroups = await call(input, 'DescribeSecurityGroups', async (): Promise<SecurityGroupFacts[]> => {
        const out = await client.send(new sdk.DescribeSecurityGroupsCommand({ GroupIds: groupIds }));
        return (out.SecurityGroups ?? [])
          .filter((g) => g.GroupId)
          .map((g) => {
            const facts: SecurityGroupFacts = {
              groupId: g.GroupId!,
              ingress: (g.IpPermissions ?? []).map((p) => {
                const rule: IngressRule = {
                  protocol: p.IpProtocol ?? '-1',
                  ipv4Ranges: strings(p.IpRanges?.map((r) => r.CidrIp)),
                  ipv6Ranges: strings(p.Ipv6Ranges?.map((r) => r.CidrIpv6)),
                  prefixListIds: strings(p.PrefixListIds?.map((r) => r.PrefixListId)),
                  sourceGroupIds: strings(p.UserIdGroupPairs?.map((r) => r.GroupId)),
                };
                if (p.FromPort !== undefined) rule.fromPort = p.FromPort;
                if (p.ToPort !== undefined) rule.toPort = p.ToPort;
                return rule;
              }),
            };
            if (g.GroupName) facts.groupName = g.GroupName;
            if (g.VpcId) facts.vpcId = g.VpcId;
            return facts;
          })
          .sort((a, b) => a.groupId.localeCompare(b.groupId));
      });
    }

    const addresses = await addressesP;
    const output: Ec2WorkerOutput = {
      addresses,
      stats: { peakRssKb: 0, sdkImportMs, callsMs: performance.now() - t1 },
    };
    if (instance) output.instance = instance;
    if (securityGroups) output.securityGroups = securityGroups;
    output.stats.peakRssKb = process.resourceUsage().maxRSS;
    return output;
  } finally {
    client.destroy();
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function main(): Promise<void> {
  try {
    const input = JSON.parse(await readStdin()) as Ec2WorkerInput;
    const output = await describe(input);
    process.stdout.write(`${JSON.stringify(output)}\n`);
  } catch (e) {
    process.stderr.write(`ec2-worker: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  }
}

await main();
