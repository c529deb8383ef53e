/**
 * The ARI half of FakeAsterisk: Asterisk's HTTP server (main/http.c) with res_ari (res/res_ari.c)
 * mounted at /ari, serving one resource: dynamic configuration of sorcery objects,
 * `/ari/asterisk/config/dynamic/{configClass}/{objectType}/{id}` with GET, PUT and DELETE
 * (res/res_ari_asterisk.c routes it, res/ari/resource_asterisk.c implements it).
 *
 * This file does what Asterisk does around the resource: reading the JSON body, Basic auth, the
 * boot check, routing, and the `{"message": "..."}` error bodies. What the objects are and what a
 * PUT or DELETE does to them is the backend's business (FakeAsterisk, over its sorcery model).
 * Line numbers cited are those of the Asterisk 20.6.0 sources.
 *
 * Knobs for tests: failNext(). Observations: requests().
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** An ari.conf user (password_format = plain). */
export interface AriUser {
  username: string;
  password: string;
  /** ari.conf read_only: only GET (and OPTIONS) allowed. */
  readOnly?: boolean;
}

/** One HTTP request the ARI server received, as a test wants to assert on it. */
export interface AriRequest {
  method: string;
  /** The request target as sent (path and query string, still percent-encoded). */
  path: string;
  /** The raw request body, '' when there was none. */
  body: string;
  /** The user name the request's credentials named ('' when it had none). */
  user: string;
  /** The status answered. */
  status: number;
}

/** What a handler answers: `body` undefined means no content (204). */
export interface AriAnswer {
  status: number;
  /** The reason phrase exactly as Asterisk writes it ("Bad request" in resource_asterisk.c, "Bad Request" in res_ari.c). */
  text: string;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface AriBackend {
  /** ast_fully_booted: ARI answers 503 until then (res_ari.c:1043). */
  fullyBooted(): boolean;
  getObject(configClass: string, objectType: string, id: string): AriAnswer;
  /** `body` is the parsed JSON request entity, or null when there was none (args->fields). */
  updateObject(configClass: string, objectType: string, id: string, body: unknown): AriAnswer;
  deleteObject(configClass: string, objectType: string, id: string): AriAnswer;
}

/** ast_ari_response_error() (res_ari.c:259): the message is the whole JSON body. */
export function ariError(status: number, text: string, message: string): AriAnswer {
  return { status, text, body: { message } };
}

/** main/http.c:85 MAX_CONTENT_LENGTH (not LOW_MEMORY): a longer JSON body is refused with 413. */
const MAX_CONTENT_LENGTH = 40960;

/** res/ari/config.c:351: the default auth_realm of ari.conf [general]. */
const DEFAULT_REALM = 'Asterisk REST Interface';

type Route = { methods?: string[]; children?: Record<string, Route>; wildcard?: { name: string; route: Route } };

/**
 * The handler tree of res_ari_asterisk.c for the modelled resource, from /ari down. Other ARI
 * resources (channels, bridges, /asterisk/info, ...) are not modelled: they answer 404 here.
 */
const ROUTES: Route = {
  children: {
    asterisk: {
      children: {
        config: {
          children: {
            dynamic: {
              wildcard: {
                name: 'configClass',
                route: {
                  wildcard: {
                    name: 'objectType',
                    route: { wildcard: { name: 'id', route: { methods: ['GET', 'PUT', 'DELETE'] } } },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
};

export class AriServer {
  private server: http.Server | null = null;
  private listenPort = 0;
  private readonly received: AriRequest[] = [];
  private failures: Array<{ method: string; status: number; message: string }> = [];

  constructor(
    private readonly backend: AriBackend,
    private readonly options: {
      users: AriUser[];
      serverName: string;
      realm?: string;
      /** http.conf [general] prefix: everything, ARI included, is then under /<prefix>/. */
      prefix?: string;
    },
  ) {}

  /** http.c reads `prefix = asterisk` as "/asterisk". */
  private get prefix(): string {
    const p = (this.options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    return p ? `/${p}` : '';
  }

  /** Listen on 127.0.0.1 (port 0 = any; after a restart the same port again). */
  async start(port = 0): Promise<number> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    // main/http.c:77 DEFAULT_SESSION_KEEP_ALIVE: sessions stay open 15 s; the agent reuses one connection.
    server.keepAliveTimeout = 15000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port || this.listenPort || 0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.listenPort = (server.address() as AddressInfo).port;
    return this.listenPort;
  }

  /** Stop listening and drop every connection, kept-alive ones included (Asterisk going down). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  get port(): number {
    return this.listenPort;
  }

  /** e.g. http://127.0.0.1:40123, or http://127.0.0.1:40123/asterisk with a prefix: what comes before /ari/... */
  get url(): string {
    return `http://127.0.0.1:${this.listenPort}${this.prefix}`;
  }

  requests(): AriRequest[] {
    return [...this.received];
  }

  /**
   * The next authenticated request with this method ('*' = any) is answered with this status and
   * `{"message": message}` instead of reaching the resource.
   */
  failNext(method: string, status: number, message: string): void {
    this.failures.push({ method: method.toUpperCase(), status, message });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of req) chunks.push(chunk as Buffer);
    } catch {
      return; // the client went away mid-body (or the server is stopping): nothing to answer
    }
    const raw = Buffer.concat(chunks);
    const target = req.url ?? '/';
    const record: AriRequest = { method: req.method ?? '', path: target, body: raw.toString('utf8'), user: '', status: 0 };
    this.received.push(record);
    let answer: AriAnswer;
    try {
      answer = this.answer(req, raw, record);
    } catch (e) {
      answer = ariError(500, 'Internal Server Error', `FakeAsterisk ARI: ${(e as Error).message}`);
    }
    record.status = answer.status;
    this.send(req, res, answer);
  }

  /** res_ari.c ast_ari_callback() then ast_ari_invoke(), in their order. */
  private answer(req: http.IncomingMessage, raw: Buffer, record: AriRequest): AriAnswer {
    const [pathPart = '', query = ''] = (req.url ?? '/').split('?', 2);
    // main/http.c:1463 handle_uri(): the prefix (any case) and '/', then "ari" (any case) alone or
    // followed by '/', reach res_ari with what follows; anything else is the HTTP server's 404 page.
    const prefix = this.prefix;
    if (pathPart.slice(0, prefix.length).toLowerCase() !== prefix.toLowerCase() || pathPart[prefix.length] !== '/') return notFoundPage();
    const below = pathPart.slice(prefix.length + 1);
    if (!/^ari(\/|$)/i.test(below)) return notFoundPage();
    const uri = below.slice(4);

    // main/http.c:1330 ast_http_get_json(): a body is read only when Content-Type is application/json.
    let body: unknown = null;
    const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    if (type === 'application/json' && raw.length > 0) {
      if (raw.length > MAX_CONTENT_LENGTH) {
        // main/http.c:1212 ast_http_get_contents(): EFBIG, and the connection closes.
        return { ...ariError(413, 'Request Entity Too Large', 'Request body too large'), headers: { Connection: 'close' } };
      }
      const parsed = parseJanssonTopLevel(raw.toString('utf8'));
      // res_ari.c:963: EIO from a body that does not parse, checked before any authentication.
      if (parsed === undefined) return ariError(400, 'Bad Request', 'Error parsing request body');
      body = parsed;
    }

    // res_ari.c:1028 authenticate_user(): Authorization: Basic, else ?api_key=user:password (res_ari.c:863).
    const credentials = basicCredentials(req.headers.authorization) ?? apiKey(query);
    record.user = credentials?.username ?? '';
    const user = credentials && this.options.users.find((u) => u.username === credentials.username && u.password === credentials.password);
    if (!user) {
      return {
        ...ariError(401, 'Unauthorized', 'Authentication required'),
        headers: { 'WWW-Authenticate': `Basic realm="${this.options.realm ?? DEFAULT_REALM}"` },
      };
    }
    if (!this.backend.fullyBooted()) {
      // res_ari.c:1043, and the connection closes after the answer.
      return { ...ariError(503, 'Service Unavailable', 'Asterisk not booted'), headers: { Connection: 'close' } };
    }
    const method = (req.method ?? '').toUpperCase();
    if (user.readOnly && method !== 'GET' && method !== 'OPTIONS') return ariError(403, 'Forbidden', 'Write access denied'); // res_ari.c:1045
    // res_ari.c:745 remove_trailing_slash().
    if (uri.endsWith('/')) return ariError(404, 'Not Found', `ARI URLs do not end with a slash. Try /ari/${uri.slice(0, -1)}`);

    // res_ari.c:509 ast_ari_invoke(): walk the handler tree segment by segment; an empty segment ends the walk.
    let route = ROUTES;
    const vars: Record<string, string> = {};
    for (const segment of uri.split('/')) {
      if (segment === '') break;
      const decoded = uriDecodeLegacy(segment);
      const explicit = route.children?.[decoded];
      const next = explicit ?? route.wildcard?.route;
      if (!next) return ariError(404, 'Not Found', 'Resource not found'); // res_ari.c:547
      if (!explicit && route.wildcard) vars[route.wildcard.name] = decoded;
      route = next;
    }
    if (!route.methods?.includes(method)) {
      // res_ari.c:583 "Invalid method" with add_allow_header() (res_ari.c:315): OPTIONS, then the methods in enum order.
      const allow = ['OPTIONS', ...(route.methods ?? [])].join(',');
      return { ...ariError(405, 'Method Not Allowed', 'Invalid method'), headers: { Allow: allow } };
    }

    const failure = this.failures.findIndex((f) => f.method === '*' || f.method === method);
    if (failure >= 0) {
      const [f] = this.failures.splice(failure, 1);
      return ariError(f!.status, http.STATUS_CODES[f!.status] ?? 'Error', f!.message);
    }

    const { configClass = '', objectType = '', id = '' } = vars;
    if (method === 'GET') return this.backend.getObject(configClass, objectType, id);
    if (method === 'PUT') return this.backend.updateObject(configClass, objectType, id, body);
    return this.backend.deleteObject(configClass, objectType, id);
  }

  /** main/http.c ast_http_send(): Server, Cache-Control, then res_ari's headers; compact JSON (ari.conf pretty = no). */
  private send(req: http.IncomingMessage, res: http.ServerResponse, answer: AriAnswer): void {
    const headers: Record<string, string> = {
      Server: this.options.serverName,
      'Cache-Control': 'no-cache, no-store',
      ...answer.headers,
    };
    let text = '';
    if (answer.body !== undefined) {
      if (typeof answer.body === 'string') text = answer.body;
      else {
        headers['Content-type'] = 'application/json';
        text = JSON.stringify(answer.body);
      }
    }
    headers['Content-Length'] = String(Buffer.byteLength(text));
    if (res.destroyed) return;
    res.writeHead(answer.status, answer.text, headers);
    res.end(text);
  }
}

/**
 * jansson json_loadb() with flags 0 (main/json.c ast_json_load_buf): the top level must be an
 * object or an array. undefined = does not parse.
 */
export function parseJanssonTopLevel(text: string): unknown {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}

/** main/http.c:1584 ast_http_get_auth(): "Basic " (case as written) + base64 of user:password. */
function basicCredentials(header: string | undefined): { username: string; password: string } | undefined {
  if (!header?.startsWith('Basic ')) return undefined;
  const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** res_ari.c:820 authenticate_api_key(): ?api_key=user:password (the parameter name in any case). */
function apiKey(query: string): { username: string; password: string } | undefined {
  for (const pair of query.split('&')) {
    const [name = '', value = ''] = pair.split('=', 2);
    if (name.toLowerCase() !== 'api_key') continue;
    const decoded = uriDecodeLegacy(value);
    const colon = decoded.indexOf(':');
    if (colon >= 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  return undefined;
}

/** main/utils.c ast_uri_decode() with ast_uri_http_legacy: %XX, and '+' is a space. */
function uriDecodeLegacy(s: string): string {
  const input = Buffer.from(s.replace(/\+/g, ' '), 'utf8');
  const out: number[] = [];
  for (let i = 0; i < input.length; i++) {
    const hex = input.subarray(i + 1, i + 3).toString('latin1');
    if (input[i] === 0x25 && /^[0-9a-fA-F]{2}$/.test(hex)) {
      out.push(parseInt(hex, 16));
      i += 2;
    } else out.push(input[i]!);
  }
  return Buffer.from(out).toString('utf8');
}

/** main/http.c ast_http_error(404): the HTML page for a URL no module serves. */
function notFoundPage(): AriAnswer {
  return {
    status: 404,
    text: 'Not Found',
    headers: { 'Content-type': 'text/html' },
    body: '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\r\n<html><head>\r\n<title>404 Not Found</title>\r\n' +
      '</head><body>\r\n<h1>Not Found</h1>\r\n<p>The requested URL was not found on this server.</p>\r\n<hr />\r\n' +
      '<address>Asterisk Server</address>\r\n</body></html>\r\n',
  };
}
