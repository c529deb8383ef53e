/**
 * The node flags and environment the systemd unit starts the daemon with, read from
 * systemd/pbx-agent.service, so that tests and the benchmark run what hosts run.
 */
import { readFileSync } from 'node:fs';

export function unitNodeFlags(unitFile = 'systemd/pbx-agent.service'): { flags: string[]; env: Record<string, string> } {
  const text = readFileSync(unitFile, 'utf8');
  const exec = /^ExecStart=\/usr\/bin\/node (.*?) \/opt\/pbx-agent\/dist\/agent\/cli\/main\.js /m.exec(text);
  if (!exec) throw new Error(`no ExecStart=/usr/bin/node ... main.js line in ${unitFile}`);
  const env: Record<string, string> = {};
  for (const m of text.matchAll(/^Environment=([A-Z_]+)=(.*)$/gm)) env[m[1]!] = m[2]!;
  return { flags: exec[1]!.split(' ').filter(Boolean), env };
}
