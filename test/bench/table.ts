/**
 * A small plain-text table printer shared by every benchmark section.
 *
 *   size    read ms  total ms  budget     result
 *   ------  -------  --------  ---------  ------
 *   10,000     12.3     210.4  < 300 ms   PASS
 */

export type Align = 'left' | 'right';

export interface Column {
  header: string;
  /** Numbers read best right-aligned; the default. */
  align?: Align;
}

export interface Table {
  title: string;
  columns: Column[];
  rows: string[][];
  /** Lines printed under the table (how it was measured, caveats). */
  notes?: string[];
}

export function formatTable(table: Table): string {
  const widths = table.columns.map((c, i) => Math.max(c.header.length, ...table.rows.map((r) => (r[i] ?? '').length)));
  const cell = (text: string, i: number) => {
    const align = table.columns[i]?.align ?? 'right';
    return align === 'left' ? text.padEnd(widths[i]!) : text.padStart(widths[i]!);
  };
  const line = (cells: string[]) => cells.map(cell).join('  ').trimEnd();
  const out = [
    table.title,
    '',
    line(table.columns.map((c) => c.header)),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...table.rows.map((r) => line(table.columns.map((_, i) => r[i] ?? ''))),
  ];
  if (table.notes?.length) out.push('', ...table.notes.map((n) => `  ${n}`));
  return out.join('\n');
}

// Number formatting used across sections, so tables look alike.

/** 10000 → "10,000" */
export function count(n: number): string {
  return n.toLocaleString('en-US');
}

/** Milliseconds with one decimal: 12.345 → "12.3" */
export function ms(n: number): string {
  return n.toFixed(1);
}

/** Megabytes with one decimal. */
export function mb(n: number): string {
  return n.toFixed(1);
}

/** Microseconds, integer-ish: 21.04 → "21.0" */
export function us(n: number): string {
  return n.toFixed(1);
}
