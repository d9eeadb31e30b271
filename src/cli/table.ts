/**
 * Rows under a header, columns padded to their widest cell and two spaces apart (the shape of
 * `kubectl get` and `docker ps`): for reading. Scripts take --output json instead, whose shape
 * does not change when a column is added.
 */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
