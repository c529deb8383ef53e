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
}

export interface SectionReport {
  tables: Table[];
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
