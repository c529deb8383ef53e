/**
 * A look at manager.conf: AMI must listen on loopback only. An AMI port reachable from the
 * internet gives whoever guesses a manager password the whole PBX.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'ini';

export interface ManagerExposure {
  enabled: boolean;
  bindaddr: string;
  port: number;
  /** True when AMI listens on an address other than loopback. */
  exposed: boolean;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/** Reads [general] of manager.conf; undefined when the file does not exist. */
export async function readManagerExposure(configDir: string): Promise<ManagerExposure | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(configDir, 'manager.conf'), 'utf8');
  } catch {
    return undefined;
  }
  // ini handles manager.conf's plain [section] key = value form; Asterisk-only syntax such as
  // templates does not occur in [general].
  const general = (parse(text).general ?? {}) as Record<string, unknown>;
  const enabled = /^(yes|true|on|1)$/i.test(String(general.enabled ?? 'no'));
  // Asterisk's default bindaddr is 0.0.0.0 (every interface) when none is given.
  const bindaddr = String(general.bindaddr ?? '0.0.0.0').trim();
  const port = Number(general.port ?? 5038);
  return { enabled, bindaddr, port, exposed: enabled && !LOOPBACK.test(bindaddr) };
}
