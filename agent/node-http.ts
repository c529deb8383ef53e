/**
 * node:http, taken through process.getBuiltinModule() instead of an ESM import.
 *
 * Why: an ESM `import ... from 'node:http'` builds a namespace of every export, and on Node 22
 * and 24 that reads http's lazy `WebSocket`/`CloseEvent`/`MessageEvent` getters, which load
 * Node's bundled undici (about 770 KB of source, compiled and kept for the life of the process).
 * The daemon uses none of it; on a 1 GiB host that is several MB of resident memory. The CommonJS
 * view of the module evaluates nothing it is not asked for. (Measured: `import('node:http')` puts
 * `internal/deps/undici/undici` in process.moduleLoadList on 22.23 and 24.22, this does not.)
 */
import type * as Http from 'node:http';

export const http: typeof Http = process.getBuiltinModule('node:http');
