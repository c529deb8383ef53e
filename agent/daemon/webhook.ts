/**
 * The push webhook: GitHub (X-Hub-Signature-256), Gitea/Forgejo (X-Gitea-Signature /
 * X-Forgejo-Signature) and GitLab (X-Gitlab-Token). The secret is checked in constant time
 * before anything else is looked at; a good push answers 202 at once and a sync runs after.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import { http } from '../node-http.js';

export type WebhookVerdict =
  | { ok: true; provider: 'github' | 'gitea' | 'gitlab'; event: string }
  | { ok: false; status: 401; reason: string };

/** Equal in constant time whatever the lengths (both sides hashed to the same length first). */
function safeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

function hmacHex(secret: string, body: Buffer): string {
  return createHmac('sha256', secret).update(body).digest('hex');
}

function headerOf(req: Pick<IncomingMessage, 'headers'>, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function verifyWebhook(req: Pick<IncomingMessage, 'headers'>, body: Buffer, secret: string): WebhookVerdict {
  const github = headerOf(req, 'x-hub-signature-256');
  const gitea = headerOf(req, 'x-gitea-signature') ?? headerOf(req, 'x-forgejo-signature');
  const gitlab = headerOf(req, 'x-gitlab-token');
  if (gitea !== undefined) {
    if (!safeEqual(gitea, hmacHex(secret, body))) return { ok: false, status: 401, reason: 'bad Gitea/Forgejo signature' };
    return { ok: true, provider: 'gitea', event: headerOf(req, 'x-gitea-event') ?? headerOf(req, 'x-forgejo-event') ?? '' };
  }
  if (github !== undefined) {
    if (!safeEqual(github, `sha256=${hmacHex(secret, body)}`)) return { ok: false, status: 401, reason: 'bad X-Hub-Signature-256' };
    return { ok: true, provider: 'github', event: headerOf(req, 'x-github-event') ?? '' };
  }
  if (gitlab !== undefined) {
    if (!safeEqual(gitlab, secret)) return { ok: false, status: 401, reason: 'bad X-Gitlab-Token' };
    return { ok: true, provider: 'gitlab', event: headerOf(req, 'x-gitlab-event') ?? '' };
  }
  return { ok: false, status: 401, reason: 'no signature header (X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token)' };
}

const PUSH_EVENTS = new Set(['push', 'Push Hook', 'Tag Push Hook']);

export interface WebhookOptions {
  host: string;
  port: number;
  secret: string;
  maxBodyBytes: number;
  /** Only pushes to this branch trigger a sync (tags always do when a ref is pinned). */
  branch: string;
  onPush(info: { provider: string; ref: string }): void;
  onRejected(info: { reason: string; remote: string }): void;
}

export function startWebhookServer(opts: WebhookOptions): Promise<Server> {
  const server = http.createServer((req, res) => {
    const reply = (status: number, text: string) => {
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
      res.end(`${text}\n`);
    };
    if (req.method !== 'POST') return reply(405, 'POST only');
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > opts.maxBodyBytes) {
        tooLarge = true;
        reply(413, 'body too large');
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (tooLarge) return;
      const body = Buffer.concat(chunks);
      const verdict = verifyWebhook(req, body, opts.secret);
      if (!verdict.ok) {
        opts.onRejected({ reason: verdict.reason, remote: req.socket.remoteAddress ?? '' });
        return reply(401, 'unauthorized');
      }
      if (verdict.event === 'ping') return reply(200, 'pong');
      if (!PUSH_EVENTS.has(verdict.event)) return reply(202, `ignored: ${verdict.event || 'no event type'}`);
      let ref = '';
      try {
        ref = String((JSON.parse(body.toString('utf8')) as { ref?: unknown }).ref ?? '');
      } catch {
        return reply(400, 'body is not JSON');
      }
      if (ref.startsWith('refs/heads/') && ref !== `refs/heads/${opts.branch}`) return reply(202, `ignored: push to ${ref}`);
      reply(202, 'sync scheduled');
      opts.onPush({ provider: verdict.provider, ref });
    });
    req.on('error', () => undefined);
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve(server));
  });
}

/**
 * Logs the first of a burst at once, then at most one line per `intervalMs` saying how many
 * were left out: a thousand forged requests are each answered, but not each logged.
 */
export class RateLimitedLog {
  private lastAt = -Infinity;
  private suppressed = 0;

  constructor(private readonly intervalMs: number, private readonly now: () => number = Date.now) {}

  note(write: (suppressed: number) => void): void {
    const t = this.now();
    if (t - this.lastAt < this.intervalMs) {
      this.suppressed++;
      return;
    }
    const suppressed = this.suppressed;
    this.suppressed = 0;
    this.lastAt = t;
    write(suppressed);
  }
}
