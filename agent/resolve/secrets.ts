/**
 * Secrets kept on the host, outside git: one file per secret in a root-only directory
 * (default /etc/pbx-agent/secrets), the file name being the name used in the YAML.
 */
import { lstat, readFile } from 'node:fs/promises';
import path from 'node:path';

export const DEFAULT_SECRETS_DIR = '/etc/pbx-agent/secrets';
const MAX_SECRET_BYTES = 4096;

export interface SecretStore {
  /** The secret's text, or a reason it cannot be used (never the secret itself). */
  read(name: string): Promise<{ value: string } | { problem: string }>;
}

/**
 * Reads a one-line secret from a file that only its owner (and group) may read. Used for named
 * extension secrets and for the AMI secret. Never returns the secret in a problem text.
 */
export async function readSecretFile(file: string): Promise<{ value: string } | { problem: string }> {
  let st;
  try {
    st = await lstat(file);
  } catch {
    return { problem: `no secret file ${file}; create it (mode 600, owned by the agent's user) holding the password` };
  }
  if (st.isSymbolicLink()) return { problem: `${file} is a symbolic link; secrets must be regular files` };
  if (!st.isFile()) return { problem: `${file} is not a regular file` };
  if ((st.mode & 0o007) !== 0) {
    return { problem: `${file} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 ${file}` };
  }
  if (st.size > MAX_SECRET_BYTES) return { problem: `${file} is over ${MAX_SECRET_BYTES} bytes; it should hold one password` };
  const text = await readFile(file, 'utf8');
  // One trailing newline is what `echo pw > file` leaves; anything else multi-line is refused.
  const value = text.replace(/\r?\n$/, '');
  if (value.length === 0) return { problem: `${file} is empty` };
  if (/[\r\n]/.test(value)) return { problem: `${file} holds more than one line; it should hold only the password` };
  return { value };
}

export class DirectorySecretStore implements SecretStore {
  constructor(readonly dir: string) {}

  async read(name: string): Promise<{ value: string } | { problem: string }> {
    // The schema restricts names to [A-Za-z0-9_-]; checked again because this builds a path.
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(name)) return { problem: `"${name}" is not a valid secret name` };
    return readSecretFile(path.join(this.dir, name));
  }
}
