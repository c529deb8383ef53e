/**
 * What a benchmark section is. run.ts runs a list of these in order; each measures one thing,
 * returns its own tables and the budgets it checked, and cleans up after itself inside ctx.tmpDir.
 */
import type { BudgetCheck } from './stats.js';
import type { Table } from './table.js';

export interface BenchContext {
  /** The project root (where package.json and dist/ are). */
  projectRoot: string;
  /** A private temporary directory for this section; removed by run.ts at the end. */
  tmpDir: string;
  /** Progress messages, to stderr so that stdout is only the tables. */
  log(message: string): void;
  /**
   * Registers what must be undone even if the bench is interrupted (SIGINT/SIGTERM): run.ts awaits
   * it before it exits on the signal. Returns the function that unregisters it (call it once the
   * section has cleaned up itself).
   */
  onInterrupt(cleanup: () => Promise<void>): () => void;
}

export interface SectionReport {
  tables: Table[];
  /**
   * Why nothing was measured (e.g. this machine cannot boot a container): printed and counted as
   * "not measured", which is neither a pass nor a failure.
   */
  notMeasured?: string;
  /** Every budget the section checked; any OVER makes the bench exit non-zero. */
  checks: BudgetCheck[];
}

export interface BenchSection {
  /** Short id, used to pick sections on the command line: `npm run bench -- validate-render`. */
  id: string;
  /** Heading printed above the section's tables. */
  name: string;
  run(ctx: BenchContext): Promise<SectionReport>;
}
