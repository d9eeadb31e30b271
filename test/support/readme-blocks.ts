import fs from 'node:fs';

/** A fenced code block of the README, with its section and the `<!-- readme-test: … -->` line above it. */
export interface ReadmeBlock {
  readonly section: string;
  readonly lang: string;
  readonly text: string;
  /** The marker's text after "readme-test:", trimmed; undefined without one. */
  readonly marker?: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
}

export function readmeBlocks(file: string): ReadmeBlock[] {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const blocks: ReadmeBlock[] = [];
  let section = '';
  for (let i = 0; i < lines.length; i++) {
    const heading = /^## (.+)$/.exec(lines[i]);
    if (heading) section = heading[1].trim();
    const fence = /^```(\w*)\s*$/.exec(lines[i]);
    if (!fence) continue;
    const end = lines.findIndex((l, j) => j > i && l.startsWith('```'));
    if (end < 0) throw new Error(`README line ${i + 1}: unclosed code block`);
    const marker = /^<!-- readme-test: (.+?) -->$/.exec(lines[i - 1] ?? '')?.[1].trim();
    blocks.push({ section, lang: fence[1], text: lines.slice(i + 1, end).join('\n') + '\n', marker, line: i + 1 });
    i = end;
  }
  return blocks;
}
