/** Sends push webhooks the way GitHub, Gitea/Forgejo and GitLab sign them. */
import { createHmac } from 'node:crypto';
import { request } from 'node:http';

export type Provider = 'github' | 'gitea' | 'gitlab';

export function pushBody(branch = 'main', after = '0'.repeat(40)): string {
  return JSON.stringify({ ref: `refs/heads/${branch}`, after, repository: { full_name: 'ops/pbx-config' } });
}

export function signedHeaders(provider: Provider, body: string, secret: string): Record<string, string> {
  const hmac = createHmac('sha256', secret).update(body).digest('hex');
  switch (provider) {
    case 'github':
      return { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${hmac}` };
    case 'gitea':
      return { 'x-gitea-event': 'push', 'x-gitea-signature': hmac };
    case 'gitlab':
      return { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': secret };
  }
}

export function post(port: number, body: string | Buffer, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/hooks/git', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', (e) => {
      // A server that refuses a too-large body may reset the connection after answering.
      if ((e as NodeJS.ErrnoException).code === 'ECONNRESET' || (e as NodeJS.ErrnoException).code === 'EPIPE') resolve({ status: 413, text: 'reset' });
      else reject(e);
    });
    req.end(body);
  });
}
