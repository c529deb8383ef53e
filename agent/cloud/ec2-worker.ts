/**
 * The EC2 worker: a short-lived child process, and the only file that imports
 * @aws-sdk/client-ec2 (about 100 MB of RSS, which must not stay in the daemon). ec2.ts spawns it,
 * writes one Ec2WorkerInput as JSON to its stdin, and reads one Ec2WorkerOutput line from its
 * stdout; then the process exits and its memory goes back to the system.
 *
 * Only Describe* calls. Credentials come from the parent (the instance role, which its IMDS
 * client caches) or else from the SDK's default chain. Throttling and transient failures are
 * retried here with exponential backoff and jitter; the SDK's own retries are off so that every
 * attempt is counted. Every attempt has a timeout, and no retry is started that could not end
 * before the deadline the parent gave: the worker answers with the cause of a failure before the
 * parent would kill it.
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
const DENIED = new Set(['UnauthorizedOperation', 'AccessDenied', 'AccessDeniedException']);
/**
 * ExpiredToken(Exception): the session token had expired when AWS received the request.
 * RequestExpired: the request's timestamp is more than 15 minutes away from AWS's time, i.e.
 * the host's clock is wrong (AWS common errors, docs.aws.amazon.com/AWSEC2/latest/APIReference/CommonErrors.html).
 */
const EXPIRED = new Set(['ExpiredToken', 'ExpiredTokenException', 'RequestExpired']);
const AUTH = new Set(['AuthFailure', 'InvalidClientTokenId', 'SignatureDoesNotMatch', 'UnrecognizedClientException', 'IncompleteSignature']);
const TRANSIENT = new Set(['InternalError', 'InternalFailure', 'ServiceUnavailable', 'Unavailable']);
/** Node's codes for a connection that could not be made or was cut. */
const UNREACHABLE = /^(ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE|ETIMEDOUT|EADDRNOTAVAIL)$/;
/** An attempt is not started with less time than this left before the deadline. */
const MIN_ATTEMPT_MS = 100;

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

type Classified = Ec2ErrorInfo & { retry: boolean; throttle: boolean };

function endpointOf(input: Ec2WorkerInput): string {
  return input.endpoint ?? `the EC2 API endpoint of ${input.region}`;
}

/**
 * What kind of failure `e` is. `answerTimedOut`: the attempt's own timer fired, i.e. the
 * endpoint did not answer in time although (the handler's connection timeout, which is
 * shorter, did not fire) a connection was made: a hung endpoint, not an unreachable one.
 */
function classify(e: unknown, action: Ec2Action, input: Ec2WorkerInput, answerTimedOut: boolean, attemptMs: number): Classified {
  const err = (e ?? {}) as SdkError;
  const code = err.name && err.name !== 'Error' ? err.name : (err.code ?? 'Error');
  const status = err.$metadata?.httpStatusCode;
  const base = { action, iamAction: `ec2:${action}` };
  const info = (kind: Ec2ErrorKind, c: string, message: string, retry = false, throttle = false): Classified => {
    const r: Classified = { kind, code: c, message: message.slice(0, 500), ...base, retry, throttle };
    if (status !== undefined) r.httpStatus = status;
    if (kind === 'timeout' || kind === 'unreachable') r.endpoint = endpointOf(input);
    return r;
  };
  const message = err.message ?? String(e);
  if (answerTimedOut) {
    return info('timeout', 'RequestTimeout', `${endpointOf(input)} did not answer within ${Math.round(attemptMs)} ms`, true);
  }
  if (THROTTLING.has(code) || status === 429) return info('throttled', code, message, true, true);
  if (DENIED.has(code)) return info('access_denied', code, message);
  if (EXPIRED.has(code)) return info('expired', code, message);
  if (AUTH.has(code)) return info('auth', code, message);
  if (code === 'CredentialsProviderError' || /could not load credentials/i.test(message)) return info('credentials', code, message);
  if (status === undefined) {
    // @smithy/node-http-handler: "did not establish a connection ... within the configured
    // timeout" (connectionTimeout) and socket inactivity both surface as TimeoutError.
    if (code === 'TimeoutError' && /establish a connection/i.test(message)) return info('unreachable', 'ConnectTimeout', message, true);
    if (code === 'TimeoutError') return info('timeout', code, message, true);
    const sys = err.code ?? code;
    if (UNREACHABLE.test(sys) || UNREACHABLE.test(code)) return info('unreachable', sys, message, true);
  }
  if (TRANSIENT.has(code) || (status !== undefined && status >= 500)) return info('other', code, message, true);
  return info('other', code, message);
}

async function call<T>(input: Ec2WorkerInput, action: Ec2Action, fn: (signal: AbortSignal) => Promise<T>): Promise<Ec2Call<T>> {
  let throttled = 0;
  let last: Ec2ErrorInfo | undefined;
  for (let attempt = 1; ; attempt++) {
    const left = input.deadlineMs - performance.now();
    if (left < MIN_ATTEMPT_MS) {
      const error: Ec2ErrorInfo = last ?? {
        kind: 'timeout',
        code: 'DeadlineExceeded',
        message: `no time was left to call ${action} before the worker's deadline (${input.deadlineMs} ms after it started)`,
        action,
        iamAction: `ec2:${action}`,
        endpoint: endpointOf(input),
      };
      return { ok: false, error, attempts: attempt - 1, throttled };
    }
    // Each attempt has its own timer over the whole exchange: @smithy/node-http-handler's
    // requestTimeout only logs a warning unless throwOnRequestTimeout is set, and its socket
    // timeout is an idle timeout that a trickling answer keeps resetting.
    const attemptMs = Math.min(input.requestTimeoutMs, left);
    const controller = new AbortController();
    let answerTimedOut = false;
    const timer = setTimeout(() => {
      answerTimedOut = true;
      controller.abort(new Error(`no answer within ${attemptMs} ms`));
    }, attemptMs);
    try {
      return { ok: true, value: await fn(controller.signal), attempts: attempt, throttled };
    } catch (e) {
      const { retry, throttle, ...error } = classify(e, action, input, answerTimedOut, attemptMs);
      last = error;
      if (throttle) throttled++;
      if (!retry || attempt >= input.maxAttempts) return { ok: false, error, attempts: attempt, throttled };
      // Exponential backoff with jitter: base * 2^(n-1), between half and all of it.
      const cap = Math.min(input.maxDelayMs, input.baseDelayMs * 2 ** (attempt - 1));
      const pause = cap / 2 + Math.random() * (cap / 2);
      // No retry that could not finish before the deadline: report this failure instead.
      if (performance.now() + pause + MIN_ATTEMPT_MS > input.deadlineMs) return { ok: false, error, attempts: attempt, throttled };
      await new Promise((r) => setTimeout(r, pause));
    } finally {
      clearTimeout(timer);
    }
  }
}

const strings = (xs: Array<string | undefined> | undefined): string[] => (xs ?? []).filter((x): x is string => typeof x === 'string').sort();

async function describe(input: Ec2WorkerInput): Promise<Ec2WorkerOutput> {
  const t0 = performance.now();
  const sdk = await import('@aws-sdk/client-ec2');
  const sdkImportMs = performance.now() - t0;
  const creds = input.credentials;
  const client = new sdk.EC2Client({
    region: input.region,
    ...(input.endpoint ? { endpoint: input.endpoint } : {}),
    ...(creds
      ? {
          credentials: {
            accessKeyId: creds.accessKeyId,
            secretAccessKey: creds.secretAccessKey,
            ...(creds.sessionToken ? { sessionToken: creds.sessionToken } : {}),
            ...(creds.expiration ? { expiration: new Date(creds.expiration) } : {}),
          },
        }
      : {}),
    maxAttempts: 1,
    // A connection not made within half the request timeout counts as unreachable; the answer's
    // time is bounded by each attempt's own timer (see call()).
    requestHandler: { connectionTimeout: Math.max(50, Math.floor(input.requestTimeoutMs / 2)) },
  });
  const t1 = performance.now();
  try {
    const addressesP = call(input, 'DescribeAddresses', async (abortSignal): Promise<ElasticAddress[]> => {
      const out = await client.send(new sdk.DescribeAddressesCommand({ Filters: [{ Name: 'instance-id', Values: [input.instanceId] }] }), { abortSignal });
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
      instance = await call(input, 'DescribeInstances', async (abortSignal): Promise<InstanceDescription> => {
        const out = await client.send(new sdk.DescribeInstancesCommand({ InstanceIds: [input.instanceId] }), { abortSignal });
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
      securityGroups = await call(input, 'DescribeSecurityGroups', async (abortSignal): Promise<SecurityGroupFacts[]> => {
        const out = await client.send(new sdk.DescribeSecurityGroupsCommand({ GroupIds: groupIds }), { abortSignal });
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
