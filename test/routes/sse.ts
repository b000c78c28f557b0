/** Reads a text/event-stream response to its end (or until `until` says stop) and parses events. */
export interface SseEvent {
  event: string;
  id?: string;
  data: string;
}

export function parseSse(text: string): SseEvent[] {
  const out: SseEvent[] = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    let event = 'message';
    let id: string | undefined;
    const data: string[] = [];
    let any = false;
    for (const line of block.split(/\r?\n/)) {
      if (line === '' || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      any = true;
      if (field === 'event') event = value;
      else if (field === 'id') id = value;
      else if (field === 'data') data.push(value);
    }
    if (any) out.push({ event, id, data: data.join('\n') });
  }
  return out;
}

export async function readSse(res: Response, until?: (e: SseEvent) => boolean, timeoutMs = 120_000): Promise<SseEvent[]> {
  if (res.body === null) return [];
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`SSE stream did not finish in ${timeoutMs} ms; got: ${text.slice(-500)}`);
      const next = await Promise.race([
        reader.read(),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`SSE read timed out; got: ${text.slice(-500)}`)), left)),
      ]);
      if (next.done) break;
      text += decoder.decode(next.value, { stream: true });
      if (until && parseSse(text).some(until)) break;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return parseSse(text);
}
