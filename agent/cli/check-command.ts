/**
 * `pbx-agent check [DIR]`: the cloud checks, once, as a report for people (or --json): is the
 * address Asterisk advertises this instance's Elastic IP, does local_net cover the VPC, are the
 * SIP ports and the RTP range open in the security groups, and are AMI and SSH closed to the world.
 *
 * Exit codes: 0 no error-level finding; 1 the settings or the config repo are invalid; 3 an
 * error-level finding, a render that fails with these host facts, or checks that could not run
 * (not on EC2, IMDS off, IMDSv1 only, hop limit).
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { cloudDesiredFrom, elasticIpFor, gatherCloudFacts, runCloudChecks, type CloudReport, type Finding, type GatheredFacts } from '../cloud/index.js';
import { hasErrors, loadDesiredState, readConfigRepo, type ConfigIssue } from '../load/index.js';
import { createLogger } from '../log.js';
import { renderConfigRepo } from '../pipeline.js';
import { DirectorySecretStore, type HostFacts } from '../resolve/index.js';
import type { AgentSettingsData } from '../../schemas/agent-settings.js';
import { StateStore } from '../record/state.js';
import { gitSourceFrom } from '../runtime.js';
import { DEFAULT_SETTINGS_FILE, loadSettings } from '../settings.js';
import { workTreeRevision } from '../source/revision.js';
import { countLine, EXIT, issuesJson, printIssues, type Io } from './output.js';

export interface CheckOptions {
  /** The config repo to check; without it, the one the agent syncs (see configRepoToCheck). */
  dir?: string;
  settingsFile?: string;
  json: boolean;
}

/** The address Asterisk advertises now, from the state's applied record, if there is one. */
async function appliedExternalAddress(stateDir: string): Promise<string | undefined> {
  return (await new StateStore(stateDir).read().catch(() => undefined))?.applied?.network?.advertised.address;
}

/**
 * Which config repo `check` looks at when no DIR is given: on a host (settings with a source),
 * the checkout the agent last synced, at the revision it applied; that is what Asterisk runs, and
 * it does not depend on the directory the command is started from (cloud-init starts it in /).
 * Without a source in the settings (a laptop), the current directory.
 */
export async function configRepoToCheck(settings: AgentSettingsData): Promise<{ dir: string; revision?: string } | { problem: string }> {
  if (!settings.source) return { dir: '.' };
  const source = gitSourceFrom(settings);
  if (source.localPath) return { dir: source.checkoutDir };
  const checkout = source.checkoutDir;
  if (!(await stat(checkout).then((s) => s.isDirectory(), () => false))) {
    return { problem: `nothing has been synced from ${settings.source.url} yet (no checkout in ${checkout}); run pbx-agent sync first, or give the config repo's directory` };
  }
  const applied = (await new StateStore(settings.state_dir).read()).applied;
  return { dir: checkout, ...(applied ? { revision: applied.revision } : {}) };
}

export async function checkCommand(opts: CheckOptions, io: Io): Promise<number> {
  const { settings, issues: settingsIssues } = await loadSettings(opts.settingsFile ?? DEFAULT_SETTINGS_FILE, { mustExist: opts.settingsFile !== undefined });
  if (!settings) {
    printIssues(io, settingsIssues);
    io.err(`settings: invalid: ${countLine(settingsIssues)}`);
    return EXIT.invalidConfig;
  }
  const target = opts.dir !== undefined ? { dir: opts.dir } : await configRepoToCheck(settings);
  if ('problem' in target) {
    if (opts.json) io.out(JSON.stringify({ ok: false, error: target.problem }, null, 2));
    else io.err(`check: ${target.problem}`);
    return EXIT.failure;
  }
  const dir = target.dir;
  const loaded = loadDesiredState(await readConfigRepo(dir));
  if (!loaded.state || hasErrors(loaded.issues)) {
    if (opts.json) io.out(JSON.stringify({ ok: false, dir, ...issuesJson(loaded.issues) }, null, 2));
    else {
      printIssues(io, loaded.issues);
      io.err(`${dir}: invalid: ${countLine(loaded.issues)}; nothing was checked`);
    }
    return EXIT.invalidConfig;
  }
  const cloud = settings.cloud;
  if (!cloud.enabled) {
    if (opts.json) io.out(JSON.stringify({ ok: true, dir, status: 'disabled' }, null, 2));
    else io.out('Cloud checks are turned off (cloud.enabled: false in the agent settings).');
    return EXIT.ok;
  }

  // The report is the output; log lines would only repeat it.
  const log = createLogger('silent');
  const gathered: GatheredFacts = await gatherCloudFacts({ settings: cloud });
  const host: HostFacts = {
    secrets: new DirectorySecretStore(settings.secrets_dir),
    elasticIp: async () => elasticIpFor(gathered.ok ? gathered.facts : { unavailable: gathered.unavailable.message }),
  };
  const revision = target.revision ?? (await workTreeRevision(dir));
  const outcome = await renderConfigRepo(dir, host, revision);
  const rendered = outcome.state?.network.externalAddress;
  const applied = await appliedExternalAddress(settings.state_dir);
  const live = applied ?? rendered;
  const desired = cloudDesiredFrom(loaded.state, { amiPort: settings.asterisk.ami.port, ...(live !== undefined ? { liveExternalAddress: live } : {}) });
  const report = await runCloudChecks({ desired, facts: gathered }, { settings: cloud }, log);

  const renderErrors = outcome.issues.filter((i) => i.severity === 'error');
  const ok = report.status === 'ok' && report.counts.error === 0 && renderErrors.length === 0;
  if (opts.json) {
    io.out(
      JSON.stringify(
        {
          ok,
          dir,
          revision,
          externalAddress: { configured: desired.externalAddress.configured, rendered, applied },
          render: { ok: outcome.files !== undefined, ...issuesJson(outcome.issues) },
          ...report,
        },
        null,
        2,
      ),
    );
  } else {
    printReport(io, report, { dir, revision, configured: desired.externalAddress.configured, rendered, applied, policy: cloud.eip_policy });
    if (renderErrors.length > 0) {
      io.out('\nRendering the config repo with these host facts fails (nothing would be applied; the last-known-good configuration stays):');
      printIssues({ out: io.out, err: io.out }, renderErrors);
    }
    io.out(`\n${summaryLine(report, renderErrors)}`);
  }
  return ok ? EXIT.ok : EXIT.failure;
}

const LABEL: Record<Finding['severity'], string> = { error: 'ERROR', warning: 'WARNING', info: 'ok' };

function printFinding(io: Io, f: Finding): void {
  io.out(`${LABEL[f.severity].padEnd(8)} ${f.event.padEnd(21)} ${f.message}`);
  if (f.severity === 'info') return;
  const pad = ' '.repeat(31);
  io.out(`${pad}expected: ${f.expected}`);
  io.out(`${pad}actual:   ${f.actual}`);
  const [first, ...rest] = f.fix.split('\n');
  if (first) io.out(`${pad}fix:      ${first}`);
  for (const line of rest) io.out(`${pad}          ${line}`);
}

function printReport(
  io: Io,
  report: CloudReport,
  ctx: { dir: string; revision: string; configured: string; rendered?: string; applied?: string; policy: string },
): void {
  if (report.status === 'unavailable') {
    const u = report.unavailable!;
    io.out(`Cloud checks could not run (${u.code}): ${u.message}`);
    if (u.fix) io.out(`fix: ${u.fix}`);
    return;
  }
  const i = report.instance!;
  const eip = report.elasticIp === undefined ? 'unknown' : report.elasticIp === null ? 'none associated' : `${report.elasticIp.publicIp}${report.elasticIp.allocationId ? ` (${report.elasticIp.allocationId})` : ''}`;
  io.out(`Cloud checks of ${i.instanceId} (${i.availabilityZone ?? i.region}) for ${ctx.dir} (revision ${ctx.revision}):`);
  io.out(`  public IPv4       ${i.publicIpv4 ?? 'none'}; Elastic IP ${eip}`);
  io.out(`  private IPv4      ${i.localIpv4 ?? 'unknown'}; VPC ${i.vpcId ?? 'unknown'} [${i.vpcCidrBlocks.join(', ')}]`);
  const groups = report.securityGroups ?? i.securityGroupIds.map((groupId) => ({ groupId }));
  io.out(`  security groups   ${groups.map((g) => ('groupName' in g && g.groupName ? `${g.groupId} (${g.groupName})` : g.groupId)).join(', ') || 'unknown'}`);
  io.out(
    `  external_address  ${ctx.configured}; rendered ${ctx.rendered ?? '(render failed)'}; applied ${ctx.applied ?? '(no managed pjsip.conf found)'}`,
  );
  io.out('');
  for (const f of report.findings) printFinding(io, f);
  const d = report.decision;
  if (d.action !== 'none') {
    io.out('');
    io.out(
      d.action === 'adopt'
        ? `Elastic IP (cloud.eip_policy ${ctx.policy}): the daemon re-renders with ${d.address}${d.previous ? ` instead of ${d.previous}` : ''}: ${d.reason}`
        : `Elastic IP (cloud.eip_policy ${ctx.policy}): alert only, nothing is changed: ${d.reason}`,
    );
  }
}

function summaryLine(report: CloudReport, renderErrors: ConfigIssue[]): string {
  if (report.status === 'unavailable') return 'Result: cloud checks skipped.';
  const c = report.counts;
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  const worker = report.ec2Worker ? `; EC2 worker ${(report.ec2Worker.wallMs / 1000).toFixed(1)} s, peak ${Math.round(report.ec2Worker.peakRssKb / 1024)} MiB` : '';
  const render = renderErrors.length ? `, ${plural(renderErrors.length, 'render error')}` : '';
  return `Result: ${plural(c.error, 'error')}, ${plural(c.warning, 'warning')}, ${c.info} ok${render}${worker}.`;
}
