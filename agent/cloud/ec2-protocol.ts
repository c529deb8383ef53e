/**
 * What the daemon and the EC2 worker (ec2-worker.ts, a short-lived child process) say to each
 * other, as JSON over stdin/stdout. Types only: importing this file loads nothing.
 */

/** The EC2 Describe* calls the worker makes; each needs the IAM action `ec2:<name>`. */
export type Ec2Action = 'DescribeAddresses' | 'DescribeSecurityGroups' | 'DescribeInstances';

export interface Ec2WorkerInput {
  region: string;
  /** EC2 API endpoint override (settings cloud.ec2_endpoint); default: the region's. */
  endpoint?: string;
  instanceId: string;
  /** From IMDS; when empty the worker asks DescribeInstances for them. */
  securityGroupIds: string[];
  /** Attempts per call when throttled or on a transient failure (1 = no retry). */
  maxAttempts: number;
  /** First backoff pause; doubled each attempt, with jitter, capped at maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Per HTTP request: connecting, sending and the whole answer. */
  requestTimeoutMs: number;
  /**
   * When the worker must have answered, in ms since its process started (performance.now()).
   * The parent kills it a little later; retries that would not end before this are not made, so
   * the worker always reports why a call failed instead of being killed without a word.
   */
  deadlineMs: number;
  /**
   * The instance role's credentials, fetched by the parent's IMDS client (which caches them
   * until shortly before they expire). Absent: the SDK's default chain finds its own (keys in
   * the environment, a profile, or IMDS).
   */
  credentials?: WorkerCredentials;
}

export interface WorkerCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** ISO time. */
  expiration?: string;
}

export interface ElasticAddress {
  publicIp: string;
  allocationId?: string;
  associationId?: string;
  instanceId?: string;
  networkInterfaceId?: string;
  privateIpAddress?: string;
}

export interface IngressRule {
  /** 'tcp', 'udp', 'icmp', '-1' (all traffic) or a protocol number, as EC2 reports it. */
  protocol: string;
  fromPort?: number;
  toPort?: number;
  ipv4Ranges: string[];
  ipv6Ranges: string[];
  prefixListIds: string[];
  /** Rules whose source is another security group. */
  sourceGroupIds: string[];
}

export interface SecurityGroupFacts {
  groupId: string;
  groupName?: string;
  vpcId?: string;
  ingress: IngressRule[];
}

export interface InstanceDescription {
  instanceId: string;
  publicIp?: string;
  privateIp?: string;
  vpcId?: string;
  /** Every security group of every network interface of the instance. */
  securityGroupIds: string[];
}

export type Ec2ErrorKind =
  /** UnauthorizedOperation / AccessDenied: the instance role lacks the IAM action. */
  | 'access_denied'
  /** Still throttled (RequestLimitExceeded) after every attempt. */
  | 'throttled'
  /** No credentials found (no instance role attached). */
  | 'credentials'
  /** ExpiredToken (the session credentials had expired) or RequestExpired (the clock is off). */
  | 'expired'
  /** AuthFailure and friends: the credentials themselves were refused. */
  | 'auth'
  /** Connected, but no answer within the request timeout: a hung endpoint or proxy. */
  | 'timeout'
  /** No connection: refused, no route, DNS, or no connection within the timeout. */
  | 'unreachable'
  /** The worker process itself failed: killed after its timeout, crashed, or answered garbage. */
  | 'worker'
  | 'other';

export interface Ec2ErrorInfo {
  kind: Ec2ErrorKind;
  /** The AWS error code, e.g. UnauthorizedOperation, or the SDK error name. */
  code: string;
  message: string;
  httpStatus?: number;
  action: Ec2Action;
  /** The IAM action the call needs, e.g. ec2:DescribeAddresses. */
  iamAction: string;
  /** The EC2 endpoint asked (for timeout and unreachable). */
  endpoint?: string;
}

export type Ec2Call<T> =
  | { ok: true; value: T; attempts: number; throttled: number }
  | { ok: false; error: Ec2ErrorInfo; attempts: number; throttled: number };

export interface Ec2WorkerOutput {
  addresses: Ec2Call<ElasticAddress[]>;
  /** Present when DescribeInstances was needed (IMDS gave no security group ids). */
  instance?: Ec2Call<InstanceDescription>;
  /** Absent when there was no group to describe (DescribeInstances failed). */
  securityGroups?: Ec2Call<SecurityGroupFacts[]>;
  /** The worker's own measurements. */
  stats: {
    /** Peak RSS of the worker process, KiB (process.resourceUsage().maxRSS). */
    peakRssKb: number;
    /** Time to import @aws-sdk/client-ec2, ms. */
    sdkImportMs: number;
    /** Time of the EC2 calls, ms. */
    callsMs: number;
  };
}
