/**
 * The one part of ARI the agent uses: dynamic configuration of sorcery objects,
 * `/ari/asterisk/config/dynamic/{configClass}/{objectType}/{id}` (res/ari/resource_asterisk.c,
 * since Asterisk 13.5). Unlike an astdb write through AMI, an object created here goes through
 * sorcery's create, so res_pjsip's observers run: a new AOR is qualified and a new endpoint's
 * device state (hints, BLF) is tracked at once.
 *
 * Plain HTTP on loopback with Basic auth (ari.conf user), one request at a time per call.
 */
// Not `import ... from 'node:http'`: that loads Node's bundled undici (see node-http.ts).
import { http } from '../node-http.js';

export class AriError extends Error {
  constructor(
    message: string,
    /** The HTTP status, or 0 when no answer came (refused, timeout). */
    readonly status: number,
  ) {
    super(message);
    this.name = 'AriError';
  }
}

export interface AriOptions {
  /** e.g. http://127.0.0.1:8088 */
  url: string;
  username: string;
  password: string;
  timeoutMs: number;
}

/** One field as ARI takes and returns it: repeated attributes (allow) are repeated entries. */
export interface AriField {
  attribute: string;
  value: string;
}

export class AriClient {
  private readonly base: URL;
  private readonly authorization: string;
  /** One kept-alive connection: each new one costs Asterisk's HTTP server a thread. */
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

  constructor(private readonly options: AriOptions) {
    this.base = new URL(options.url);
    this.authorization = `Basic ${Buffer.from(`${options.username}:${options.password}`).toString('base64')}`;
  }

  /** Creates or updates a res_pjsip object with these fields (PUT: create when missing). */
  async putObject(type: string, id: string, fields: readonly AriField[]): Promise<void> {
    await this.request('PUT', type, id, JSON.stringify({ fields }));
  }

  /** Deletes a res_pjsip object; true when it was there, false when ARI answered 404. */
  async deleteObject(type: string, id: string): Promise<boolean> {
    try {
      await this.request('DELETE', type, id);
      return true;
    } catch (e) {
      if (e instanceof AriError && e.status === 404) return false;
      throw e;
    }
  }

  /**
   * Whether ARI answers this user: a GET of an AOR that does not exist is 404 when the password
   * is right (resource_asterisk.c), 401 when it is not; throws AriError otherwise.
   */
  async check(id: string): Promise<void> {
    try {
      await this.request('GET', 'aor', id);
    } catch (e) {
      if (e instanceof AriError && e.status === 404) return;
      throw e;
    }
  }

  close(): void {
    this.agent.destroy();
  }

  private request(method: 'GET' | 'PUT' | 'DELETE', type: string, id: string, body?: string): Promise<string> {
    const path = `${this.base.pathname.replace(/\/$/, '')}/ari/asterisk/config/dynamic/res_pjsip/${encodeURIComponent(type)}/${encodeURIComponent(id)}`;
    const what = `ARI ${method} res_pjsip/${type}/${id}`;
    return new Promise<string>((resolve, reject) => {
      const req = http.request(
        {
          host: this.base.hostname,
          port: this.base.port || 80,
          method,
          path,
          agent: this.agent,
          timeout: this.options.timeoutMs,
          headers: {
            authorization: this.authorization,
            ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve(text);
            reject(new AriError(`${what}: ${status} ${describeAriBody(text)}`, status));
          });
          res.on('error', (e) => reject(new AriError(`${what}: ${e.message}`, 0)));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.options.timeoutMs} ms`)));
      req.on('error', (e) => reject(new AriError(`${what}: ${e.message}`, 0)));
      req.end(body);
    });
  }
}

/** ARI's error bodies are `{"message": "..."}`; anything else is shown as it came, cut short. */
function describeAriBody(text: string): string {
  try {
    const parsed = JSON.parse(text) as { message?: unknown; error?: unknown };
    const message = parsed.message ?? parsed.error;
    if (typeof message === 'string') return message;
  } catch {
    // not JSON
  }
  return text.slice(0, 200);
}
