// The npm `openai` client (v4) pointed at a running `bee serve`: every call
// goes through the library's own request building, SSE parsing and error
// classes, so this checks bee's wire format the way users' programs see it.
//   node tests/openai/client.cjs PORT API_KEY MODEL_ID
// Prints one "ok - ..." line per check; exits 1 at the first failure.
'use strict';
const OpenAI = require('openai');

const [port, key, modelId] = process.argv.slice(2);
if (!port || !key || !modelId) {
  console.error('usage: node client.cjs PORT API_KEY MODEL_ID');
  process.exit(2);
}
const baseURL = `http://127.0.0.1:${port}/v1`;
const client = new OpenAI({ apiKey: key, baseURL, maxRetries: 0, timeout: 60000 });

function check(cond, what, detail) {
  if (!cond) {
    console.log(`not ok - ${what}${detail !== undefined ? ': ' + JSON.stringify(detail) : ''}`);
    process.exit(1);
  }
}

async function expectError(cls, status, what, fn) {
  try {
    await fn();
  } catch (e) {
    check(e instanceof cls, `${what}: error class`, { name: e && e.constructor && e.constructor.name, msg: e && e.message });
    check(e.status === status, `${what}: status`, e.status);
    return e;
  }
  check(false, `${what}: no error raised`);
}

async function main() {
  const models = await client.models.list();
  check(models.data.some((m) => m.id === modelId), 'models.list has the model', models.data);
  console.log(`ok - models.list: ${models.data.map((m) => m.id).join(', ')}`);

  // ignore_eos (a bee extension, passed through by the client) keeps the length fixed
  const greedy = { model: modelId, prompt: '春眠不觉晓，', max_tokens: 8, temperature: 0, ignore_eos: true };
  const c = await client.completions.create({ ...greedy, logprobs: 1 });
  check(c.object === 'text_completion' && typeof c.choices[0].text === 'string', 'completion shape', c);
  check(c.usage.completion_tokens === 8 && c.usage.prompt_tokens > 0, 'completion usage', c.usage);
  check(c.choices[0].logprobs.tokens.length === 8 && c.choices[0].logprobs.token_logprobs.every((x) => x <= 0),
        'completion logprobs', c.choices[0].logprobs);
  check(c.choices[0].logprobs.tokens.join('') === c.choices[0].text, 'logprob tokens spell the text', c.choices[0]);
  console.log(`ok - completions.create: ${JSON.stringify(c.choices[0].text)}, usage ${JSON.stringify(c.usage)}`);

  let streamed = '', finish = null, chunks = 0;
  for await (const ch of await client.completions.create({ ...greedy, stream: true })) {
    chunks++;
    streamed += ch.choices[0].text;
    if (ch.choices[0].finish_reason) finish = ch.choices[0].finish_reason;
  }
  check(streamed === c.choices[0].text, 'streamed completion equals the non-streamed one', { streamed, whole: c.choices[0].text });
  check(finish === 'length' && chunks >= 2, 'stream finish_reason / chunks', { finish, chunks });
  console.log(`ok - completions stream: ${chunks} chunks, same text, finish_reason ${finish}`);

  const seeded = { model: modelId, prompt: 'The', max_tokens: 6, temperature: 0.9, top_p: 0.9, seed: 7, n: 2 };
  const s1 = await client.completions.create(seeded), s2 = await client.completions.create(seeded);
  check(s1.choices.length === 2 && s1.choices.map((x) => x.index).join() === '0,1', 'n = 2 choices', s1.choices);
  check(JSON.stringify(s1.choices.map((x) => x.text)) === JSON.stringify(s2.choices.map((x) => x.text)),
        'same seed, same samples', [s1.choices, s2.choices]);
  console.log('ok - n = 2 with seed: two choices, reproducible');

  const msgs = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: '你好，介绍一下你自己。' }];
  const chat = await client.chat.completions.create({ model: modelId, messages: msgs, max_tokens: 8, temperature: 0 });
  const msg = chat.choices[0].message;
  check(chat.object === 'chat.completion' && msg.role === 'assistant' && typeof msg.content === 'string', 'chat shape', chat);
  check(chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens, 'chat usage', chat.usage);
  let delta = '', role = null, cfinish = null;
  for await (const ch of await client.chat.completions.create({ model: modelId, messages: msgs, max_tokens: 8,
                                                              temperature: 0, stream: true })) {
    const d = ch.choices[0].delta;
    if (d.role) role = d.role;
    if (d.content) delta += d.content;
    if (ch.choices[0].finish_reason) cfinish = ch.choices[0].finish_reason;
  }
  check(role === 'assistant' && delta === msg.content && cfinish, 'chat stream equals the non-streamed reply',
        { role, delta, whole: msg.content, cfinish });
  console.log(`ok - chat.completions (plain and stream): ${JSON.stringify(msg.content)}`);

  // a stop string from inside the greedy text: the answer is the text before its first occurrence
  const full = c.choices[0].text, k = [...full].findIndex((ch, i) => i > 0 && ch.trim() && !full.startsWith(ch));
  if (k > 0) {
    const stopAt = [...full][k], want = full.slice(0, full.indexOf(stopAt));
    const st = await client.completions.create({ ...greedy, stop: [stopAt] });
    check(st.choices[0].text === want && st.choices[0].finish_reason === 'stop', 'stop sequence', { stopAt, want, got: st.choices[0] });
    console.log(`ok - stop ${JSON.stringify(stopAt)}: ${JSON.stringify(st.choices[0].text)}, finish_reason stop`);
  }

  let usage = null, last = null;
  for await (const ch of await client.chat.completions.create({ model: modelId, messages: msgs, max_tokens: 8, temperature: 0,
                                                              stream: true, stream_options: { include_usage: true } })) {
    last = ch;
    if (ch.usage) usage = ch.usage;
  }
  check(usage && usage.completion_tokens === chat.usage.completion_tokens && last.choices.length === 0,
        'stream_options.include_usage: a last chunk with usage and no choices', { usage, last });
  console.log(`ok - stream_options.include_usage: ${JSON.stringify(usage)}`);

  const bad = new OpenAI({ apiKey: 'wrong-key', baseURL, maxRetries: 0 });
  await expectError(OpenAI.AuthenticationError, 401, 'wrong API key', () => bad.models.list());
  const e400 = await expectError(OpenAI.BadRequestError, 400, 'bad field', () =>
    client.completions.create({ ...greedy, temperature: 'hot' }));
  check(e400.param === 'temperature' || JSON.stringify(e400.error || {}).includes('temperature'), 'error names the field', e400.error);
  await expectError(OpenAI.BadRequestError, 400, 'context overflow', () =>
    client.completions.create({ ...greedy, max_tokens: 1000000 }));
  await expectError(OpenAI.NotFoundError, 404, 'unknown endpoint', () => client.embeddings.create({ model: modelId, input: 'x' }));
  console.log('ok - errors: 401 AuthenticationError, 400 BadRequestError naming the field, 400 overflow, 404 NotFoundError');
}

main().catch((e) => {
  console.log(`not ok - unexpected: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
