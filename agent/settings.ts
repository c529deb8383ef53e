/**
 * Reads and validates the agent's settings file, with the same located messages as the config repo.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { AgentSettings, type AgentSettingsData } from '../schemas/agent-settings.js';
import type { ConfigIssue } from './load/issues.js';
import { validateFile } from './load/validate.js';
import { parseYaml } from './load/yaml-document.js';

export const DEFAULT_SETTINGS_FILE = '/etc/pbx-agent/agent.yaml';

export async function loadSettings(
  file: string,
  options: { mustExist: boolean },
): Promise<{ settings?: AgentSettingsData; issues: ConfigIssue[] }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !options.mustExist) {
      return { settings: AgentSettings.parse({}), issues: [] };
    }
    return {
      issues: [{ severity: 'error', file, line: 0, column: 0, field: '', message: `cannot be read: ${(e as Error).message}` }],
    };
  }
  const { parsed, issues } = parseYaml({ path: path.resolve(file), text });
  if (!parsed) return { issues };
  const { data, issues: schemaIssues } = validateFile(parsed, AgentSettings);
  return data ? { settings: data, issues: schemaIssues } : { issues: schemaIssues };
}
