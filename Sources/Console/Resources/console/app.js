'use strict';
// Swiftlet console: login, playground, deployments, live metrics, usage. Plain JS, no libraries; every
// request goes to this server's /v1/ API with the key as a Bearer token.
(function () {
  const $ = (id) => document.getElementById(id);
  const KEY = 'swiftlet.key';
  const DEFAULT_SCHEMA = {
    type: 'object',
    properties: {
      answer: { type: 'string', maxLength: 200 },
      confidence: { type: 'integer', minimum: 0, maximum: 100 },
    },
    required: ['answer', 'confidence'],
    additionalProperties: false,
  };
  const state = {
    key: sessionStorage.getItem(KEY) || '',
    session: null,
    page: null,
    messages: [],
    abort: null,
    feed: null,
    history: [],
    depTimer: null,
    usageTimer: null,
  };

  // MARK: API

  class APIError extends Error {
    constructor(message, status, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function request(path, options = {}, key = state.key) {
    const headers = Object.assign({}, options.headers || {});
    if (key) headers.Authorization = 'Bearer ' + key;
    if (options.body) headers['Content-Type'] = 'application/json';
    return fetch(path, Object.assign({}, options, { headers, cache: 'no-store' }));
  }

  async function failure(r) {
    let body = null;
    try { body = await r.json(); } catch (_) { /* not JSON */ }
    const e = body && body.error;
    return new APIError((e && e.message) || 'HTTP ' + r.status + ' ' + r.statusText, r.status, e && e.code);
  }

  async function getJSON(path, options, key) {
    const r = await request(path, options, key);
    if (!r.ok) {
      const e = await failure(r);
      if (r.status === 401 && state.session) signOut('Your key is no longer accepted: ' + e.message);
      throw e;
    }
    return r.json();
  }

  // MARK: Formatting

  const fmt = {
    int: (n) => (n == null ? '–' : Number(n).toLocaleString('en-US')),
    num: (n, d = 2) => (n == null || !isFinite(n) ? '–' : Number(n).toFixed(d)),
    money(n) {
      if (n == null || !isFinite(n)) return '–';
      if (n === 0) return '$0';
      if (Math.abs(n) >= 0.01) return '$' + n.toFixed(4);
      return '$' + n.toPrecision(3);
    },
    seconds(s) {
      if (s == null || !isFinite(s)) return '–';
      return s < 1 ? (s * 1000).toFixed(0) + ' ms' : s.toFixed(2) + ' s';
    },
    // 134515008 -> "135M", 1130000000 -> "1.13B", 80000 -> "80K".
    count(n) {
      if (n == null || !isFinite(n)) return '–';
      for (const [div, unit] of [[1e12, 'T'], [1e9, 'B'], [1e6, 'M'], [1e3, 'K']]) {
        if (n >= div) return Number((n / div).toPrecision(3)) + unit;
      }
      return String(n);
    },
    bytes(n) {
      if (n == null || !isFinite(n)) return '–';
      for (const [div, unit] of [[2 ** 30, 'GiB'], [2 ** 20, 'MiB'], [2 ** 10, 'KiB']]) {
        if (n >= div) return (n / div).toFixed(1) + ' ' + unit;
      }
      return n + ' B';
    },
    pct: (x) => (x == null || !isFinite(x) ? '–' : (x * 100).toFixed(0) + '%'),
    time: (d) => new Date(d).toLocaleString(),
  };

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else if (k in e) e[k] = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  function show(node, text) {
    node.textContent = text || '';
    node.hidden = !text;
  }

  // MARK: Login and navigation

  async function start() {
    bind();
    if (state.key) {
      try {
        enter(await getJSON('/v1/console/session', {}, state.key));
        return;
      } catch (e) {
        sessionStorage.removeItem(KEY);
        state.key = '';
      }
    }
    try {
      const s = await getJSON('/v1/console/session', {}, '');
      if (s.open) {
        enter(s);
        return;
      }
    } catch (_) { /* a key is needed */ }
    showLogin();
  }

  function showLogin(message) {
    stopPage();
    state.session = null;
    $('loading').hidden = true;
    $('nav').hidden = true;
    $('nav-toggle').hidden = true;
    for (const p of document.querySelectorAll('.page')) p.hidden = p.id !== 'page-login';
    show($('login-error'), message);
    $('login-key').focus();
  }

  async function login(event) {
    event.preventDefault();
    const key = $('login-key').value.trim();
    const button = $('login-submit');
    button.disabled = true;
    show($('login-error'), '');
    try {
      const s = await getJSON('/v1/console/session', {}, key);
      state.key = key;
      if (key) sessionStorage.setItem(KEY, key);
      $('login-key').value = '';
      enter(s);
    } catch (e) {
      const why = e.status === 401
        ? (key ? 'This key was not accepted: it is wrong or revoked.' : 'This server needs an API key.')
        : 'Cannot sign in: ' + e.message;
      show($('login-error'), why);
    } finally {
      button.disabled = false;
    }
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    state.key = '';
    state.messages = [];
    if (state.abort) state.abort.abort();
    location.hash = '';
    showLogin(message);
  }

  function enter(session) {
    state.session = session;
    const admin = session.role === 'admin';
    $('loading').hidden = true;
    $('nav').hidden = false;
    $('nav-toggle').hidden = false;
    $('who-role').textContent = session.role;
    $('who-role').className = 'badge ' + session.role;
    $('who-name').textContent = session.key ? session.key.name : session.open ? 'open server' : '';
    $('logout').hidden = !!session.open;
    for (const a of document.querySelectorAll('#nav a[data-admin]')) a.hidden = !admin;
    fillModels();
    route();
  }

  function isAdmin() { return state.session && state.session.role === 'admin'; }

  function route() {
    if (!state.session) return;
    let page = (location.hash.replace(/^#\/?/, '') || 'playground').split('?')[0];
    if (!['playground', 'deployments', 'metrics', 'usage'].includes(page)) page = 'playground';
    if ((page === 'deployments' || page === 'metrics') && !isAdmin()) page = 'playground';
    stopPage();
    state.page = page;
    for (const p of document.querySelectorAll('.page')) p.hidden = p.id !== 'page-' + page;
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === page);
    $('nav').classList.remove('open');
    $('nav-toggle').setAttribute('aria-expanded', 'false');
    document.title = page[0].toUpperCase() + page.slice(1) + ' · Swiftlet console';
    if (page === 'deployments') startDeployments();
    if (page === 'metrics') startMetrics();
    if (page === 'usage') startUsage();
    if (page === 'playground') $('pg-input').focus();
  }

  function stopPage() {
    clearInterval(state.depTimer);
    clearInterval(state.usageTimer);
    state.depTimer = state.usageTimer = null;
    if (state.feed) {
      state.feed.abort();
      state.feed = null;
    }
  }

  // MARK: Playground

  function fillModels() {
    const select = $('pg-model');
    const previous = select.value;
    select.replaceChildren(...state.session.deployments.map((d) => el('option', { value: d.name, text: d.name })));
    if (state.session.deployments.some((d) => d.name === previous)) select.value = previous;
    if (!state.session.deployments.length) select.append(el('option', { value: '', text: '(model loading)' }));
  }

  function number(id, name, { integer = false, optional = false } = {}) {
    const raw = $(id).value.trim();
    if (raw === '') {
      if (optional) return undefined;
      throw new Error(name + ' is required.');
    }
    const v = Number(raw);
    if (!isFinite(v) || (integer && !Number.isInteger(v))) throw new Error(name + ' must be ' + (integer ? 'a whole number.' : 'a number.'));
    return v;
  }

  // The request the playground sends for `text` (throws with a message for people on bad settings).
  function chatBody(text) {
    const model = $('pg-model').value;
    if (!model) throw new Error('No deployment to send to yet.');
    const messages = [];
    const system = $('pg-system').value.trim();
    if (system) messages.push({ role: 'system', content: system });
    messages.push(...state.messages, { role: 'user', content: text });
    const body = { model, messages };
    body.temperature = number('pg-temperature', 'Temperature');
    body.top_p = number('pg-top-p', 'Top p');
    body.max_tokens = number('pg-max-tokens', 'Max tokens', { integer: true });
    const seed = number('pg-seed', 'Seed', { integer: true, optional: true });
    if (seed !== undefined) body.seed = seed;
    if ($('pg-json').checked) {
      let schema;
      try {
        schema = JSON.parse($('pg-schema').value);
      } catch (e) {
        throw new Error('The JSON schema is not valid JSON: ' + e.message);
      }
      body.response_format = { type: 'json_schema', json_schema: { name: 'playground', strict: true, schema } };
    }
    body.stream = true;
    body.stream_options = { include_usage: true };
    return body;
  }

  // Chat, or two texts' embeddings and their cosine similarity (the second column shows one of them).
  function setMode(mode) {
    $('pg-embed').hidden = mode !== 'embed';
    document.querySelector('.card.chat').hidden = mode === 'embed';
    $('pg-chat-settings').hidden = mode === 'embed';
  }

  function cosine(a, b) {
    let dot = 0, na = 0, nb = 0;
    for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
    return dot / Math.sqrt(na * nb);
  }

  async function compareEmbeddings() {
    show($('em-error'), '');
    for (const id of ['em-cosine', 'em-dims', 'em-tokens', 'em-cost']) $(id).textContent = '–';
    const model = $('pg-model').value;
    const a = $('em-a').value.trim(), b = $('em-b').value.trim();
    if (!model) return show($('em-error'), 'No deployment to send to yet.');
    if (!a || !b) return show($('em-error'), 'Enter two texts to compare.');
    $('em-compare').disabled = true;
    try {
      const r = await getJSON('/v1/embeddings', { method: 'POST', body: JSON.stringify({ model, input: [a, b] }) });
      const [x, y] = r.data.map((d) => d.embedding);
      const c = cosine(x, y);
      $('em-cosine').textContent = c.toFixed(4);
      $('em-cosine').dataset.value = String(c);
      $('em-dims').textContent = String(x.length);
      $('em-tokens').textContent = fmt.int(r.usage.prompt_tokens);
      const p = price(model);
      $('em-cost').textContent = p ? fmt.money(r.usage.prompt_tokens * p.input_per_million / 1e6) : '–';
    } catch (e) {
      show($('em-error'), e.message);
    } finally {
      $('em-compare').disabled = false;
    }
  }

  function addMessage(role, text) {
    const t = $('pg-transcript');
    const empty = t.querySelector('.empty');
    if (empty) empty.remove();
    const m = el('div', { class: 'message ' + role, 'data-role': role });
    const body = el('span', { class: 'text', text });
    m.append(body);
    t.append(m);
    t.scrollTop = t.scrollHeight;
    return m;
  }

  function resetStats() {
    for (const id of ['stat-ttft', 'stat-tps', 'stat-prompt-tokens', 'stat-completion-tokens', 'stat-cost']) $(id).textContent = '–';
  }

  function price(model) {
    const d = state.session.deployments.find((x) => x.name === model);
    return d && d.price;
  }

  async function send(event) {
    if (event) event.preventDefault();
    if (state.abort) return;
    const input = $('pg-input');
    const text = input.value.trim();
    if (!text) return;
    show($('pg-error'), '');
    let body;
    try {
      body = chatBody(text);
    } catch (e) {
      show($('pg-error'), e.message);
      return;
    }
    input.value = '';
    addMessage('user', text);
    const bubble = addMessage('assistant', '');
    bubble.classList.add('streaming');
    const textNode = bubble.querySelector('.text');
    resetStats();
    const controller = new AbortController();
    state.abort = controller;
    $('pg-send').disabled = true;
    $('pg-stop').hidden = false;

    const t0 = performance.now();
    let first = null, last = null, reply = '', usage = null, finish = null, failed = null;
    try {
      const r = await request('/v1/chat/completions', { method: 'POST', body: JSON.stringify(body), signal: controller.signal });
      if (!r.ok) throw await failure(r);
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      let done = false;
      while (!done) {
        const chunk = await reader.read();
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, '\n');
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const raw = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = raw.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
          if (!data) continue;
          if (data === '[DONE]') { done = true; break; }
          const event = JSON.parse(data);
          if (event.error) throw new APIError(event.error.message, 200, event.error.code);
          if (event.usage) usage = event.usage;
          for (const choice of event.choices || []) {
            const delta = (choice.delta && choice.delta.content) || '';
            if (delta) {
              const now = performance.now();
              if (first === null) {
                first = now;
                $('stat-ttft').textContent = fmt.seconds((first - t0) / 1000);
              }
              last = now;
              reply += delta;
              textNode.textContent = reply;
              $('pg-transcript').scrollTop = $('pg-transcript').scrollHeight;
            }
            if (choice.finish_reason) finish = choice.finish_reason;
          }
        }
      }
      if (!done) throw new Error('The stream ended early.');
    } catch (e) {
      failed = e.name === 'AbortError' ? 'Stopped.' : e.message;
    } finally {
      state.abort = null;
      $('pg-send').disabled = false;
      $('pg-stop').hidden = true;
      bubble.classList.remove('streaming');
    }

    if (failed) {
      bubble.classList.add('failed');
      if (!reply) textNode.textContent = failed;
      show($('pg-error'), failed);
    } else {
      state.messages.push({ role: 'user', content: text }, { role: 'assistant', content: reply });
    }
    if (usage) {
      $('stat-prompt-tokens').textContent = fmt.int(usage.prompt_tokens);
      $('stat-completion-tokens').textContent = fmt.int(usage.completion_tokens);
      bubble.dataset.completionTokens = String(usage.completion_tokens);
      bubble.dataset.promptTokens = String(usage.prompt_tokens);
      if (usage.completion_tokens > 1 && last > first) {
        $('stat-tps').textContent = fmt.num((usage.completion_tokens - 1) / ((last - first) / 1000), 1);
      }
      const p = price(body.model);
      $('stat-cost').textContent = p
        ? fmt.money((usage.prompt_tokens * p.input_per_million + usage.completion_tokens * p.output_per_million) / 1e6)
        : 'no price';
      const meta = [fmt.int(usage.completion_tokens) + ' tokens'];
      if (first !== null) meta.push('TTFT ' + fmt.seconds((first - t0) / 1000));
      if (finish) meta.push('finish: ' + finish);
      bubble.append(el('span', { class: 'meta', text: meta.join(' · ') }));
    }
    bubble.dataset.done = failed ? 'error' : 'true';
  }

  // MARK: View code

  function shellQuote(s) { return "'" + s.replace(/'/g, "'\\''") + "'"; }

  function python(v, indent = 0) {
    const pad = '    '.repeat(indent + 1), end = '    '.repeat(indent);
    if (v === null || v === undefined) return 'None';
    if (v === true) return 'True';
    if (v === false) return 'False';
    if (typeof v === 'number' || typeof v === 'string') return JSON.stringify(v);
    if (Array.isArray(v)) {
      if (!v.length) return '[]';
      return '[\n' + v.map((x) => pad + python(x, indent + 1)).join(',\n') + ',\n' + end + ']';
    }
    const keys = Object.keys(v);
    if (!keys.length) return '{}';
    return '{\n' + keys.map((k) => pad + JSON.stringify(k) + ': ' + python(v[k], indent + 1)).join(',\n') + ',\n' + end + '}';
  }

  function showCode() {
    let body;
    try {
      body = chatBody($('pg-input').value.trim() || 'Hello!');
    } catch (e) {
      show($('pg-error'), e.message);
      return;
    }
    const base = location.origin;
    const keyed = !(state.session && state.session.open);
    const curl = ['curl -N ' + base + '/v1/chat/completions \\'];
    if (keyed) curl.push('  -H "Authorization: Bearer $SWIFTLET_API_KEY" \\');
    curl.push("  -H 'Content-Type: application/json' \\", '  -d ' + shellQuote(JSON.stringify(body, null, 2)));
    $('code-curl').textContent = curl.join('\n');

    const args = Object.entries(body).map(([k, v]) => '    ' + k + '=' + python(v, 1) + ',');
    $('code-python').textContent = [
      keyed ? 'import os\n' : '',
      'from openai import OpenAI',
      '',
      'client = OpenAI(base_url="' + base + '/v1", api_key=' + (keyed ? 'os.environ["SWIFTLET_API_KEY"]' : '"unused"') + ')',
      'stream = client.chat.completions.create(',
      ...args,
      ')',
      'for chunk in stream:',
      '    if chunk.choices:',
      '        print(chunk.choices[0].delta.content or "", end="", flush=True)',
      '    if chunk.usage:',
      '        print("\\n", chunk.usage)',
    ].join('\n').replace(/^\n/, '');
    tab('curl');
    $('code-dialog').showModal();
  }

  function tab(name) {
    for (const b of document.querySelectorAll('#code-dialog .tabs button')) b.classList.toggle('active', b.dataset.tab === name);
    $('code-curl').hidden = name !== 'curl';
    $('code-python').hidden = name !== 'python';
  }

  // MARK: Deployments

  function startDeployments() {
    loadDeployments();
    state.depTimer = setInterval(() => { if (!document.hidden) loadDeployments(); }, 3000);
  }

  async function loadDeployments() {
    try {
      const list = await getJSON('/v1/deployments');
      if (state.page !== 'deployments') return;
      show($('dep-error'), '');
      renderDeployments(list);
      $('dep-updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    } catch (e) {
      show($('dep-error'), 'Cannot load deployments: ' + e.message);
    }
  }

  function fact(name, value, title) {
    return el('div', { title }, el('dt', { text: name }), el('dd', { text: value }));
  }

  function renderDeployments(list) {
    const serve = list.server === 'serve';
    show($('dep-note'), serve
      ? 'swiftlet serve runs one model on this machine: its engine is shown below. Replicas, prices and scaling belong to swiftlet gateway.'
      : (list.status === 'loading' ? 'The model is loading.' : ''));
    const root = $('dep-list');
    const seen = new Set();
    for (const d of list.data) {
      seen.add(d.name);
      let card = root.querySelector('[data-deployment="' + CSS.escape(d.name) + '"]');
      if (!card) {
        card = el('article', { class: 'card deployment', 'data-deployment': d.name },
          el('header', {}, el('h2', { text: d.name }), el('span', { class: 'muted', text: d.model })),
          el('div', { class: 'dep-body' }));
        if (state.session.can_scale && !serve) card.insertBefore(scaleForm(d), card.querySelector('.dep-body'));
        root.append(card);
      }
      const form = card.querySelector('form.scale');
      if (form && !form.dataset.dirty) {
        form.elements.min.value = d.replicas.min;
        form.elements.max.value = d.replicas.max;
      }
      if (form) {
        const overridden = d.replicas.min !== d.replicas.config_min || d.replicas.max !== d.replicas.config_max;
        form.querySelector('.config').textContent = overridden
          ? 'swiftlet.yaml says ' + d.replicas.config_min + '–' + d.replicas.config_max + ' (changed until the gateway restarts)'
          : 'as in swiftlet.yaml';
      }
      card.querySelector('.dep-body').replaceChildren(...deploymentBody(d, serve));
    }
    for (const card of root.querySelectorAll('[data-deployment]')) if (!seen.has(card.dataset.deployment)) card.remove();
    if (!list.data.length) root.replaceChildren(el('p', { class: 'muted', text: 'No deployments.' }));
  }

  // Total and active parameters: for a mixture of experts a token reads only `experts_used` of them.
  function modelFacts(m) {
    if (!m) return [fact('Parameters', 'reported once a replica registers')];
    const moe = m.experts > 0;
    return [
      fact('Parameters', fmt.count(m.parameters) + (moe ? ' total, ' + fmt.count(m.active_parameters) + ' active' : ''),
        moe ? m.parameters + ' parameters, ' + m.active_parameters + ' read per token' : m.parameters + ' parameters'),
      ...(moe ? [fact('Experts', m.experts_used + ' of ' + m.experts + ' per token')] : []),
      fact('Weights', m.architecture + ', ' + m.weight_type + ', ' + fmt.bytes(m.file_bytes)),
    ];
  }

  function deploymentBody(d, serve) {
    const facts = [
      ...modelFacts(d.model_facts),
      fact('Replicas ready', d.replicas.ready + ' of ' + d.replicas.desired + ' wanted'),
      fact('Bounds', d.replicas.min + '–' + d.replicas.max),
      fact('Starting', String(d.replicas.starting)),
      fact('Requests in flight', String(d.outstanding)),
    ];
    if (serve && d.engine) {
      const e = d.engine;
      facts.push(fact('Context', fmt.int(e.context_length) + ' tokens'), fact('KV block', e.kv_block_size + ' tokens'),
        fact('Prefix cache hits', fmt.pct(e.prefix_hit_rate)), fact('Preemptions', fmt.int(e.preemptions)),
        fact('Engine steps', fmt.int(e.steps)));
    } else {
      facts.push(
        fact('Target per replica', String(d.target_concurrency)),
        fact('Price in / out per M', fmt.money(d.price.input_per_million) + ' / ' + fmt.money(d.price.output_per_million)),
        fact('Measured cost per M', fmt.money(d.cost.measured_cost_per_million_tokens),
          'hardware cost over the last ' + Math.round(d.cost.window_seconds) + ' s divided by the tokens served'),
        fact('Cold starts', d.cold_starts.count ? d.cold_starts.count + ' (last ' + fmt.seconds(d.cold_starts.last_seconds) + ', max ' + fmt.seconds(d.cold_starts.max_seconds) + ')' : '0'));
    }
    const rows = [];
    for (const c of d.clusters) {
      if (!c.replicas.length) {
        rows.push(el('tr', {}, el('td', { text: c.name }), el('td', { class: 'empty', colSpan: 8, text: 'no replicas' })));
      }
      for (const r of c.replicas) {
        const kv = el('progress', { max: 1, value: r.kv_usage || 0 });
        rows.push(el('tr', { 'data-replica': r.id, 'data-state': r.state },
          el('td', { text: c.name }),
          el('td', { class: 'mono', text: r.id }),
          el('td', {}, el('span', { class: 'state state-' + r.state, text: r.state + (r.ejected ? ' (ejected)' : '') })),
          el('td', { class: 'num', text: r.load.running + ' / ' + r.load.waiting }),
          el('td', { class: 'num', text: String(r.outstanding) }),
          el('td', { class: 'num' }, kv, document.createTextNode(' ' + fmt.pct(r.kv_usage) + ' of ' + fmt.int(r.load.kv_blocks_total))),
          el('td', { class: 'num', text: r.load.prefix_lookups ? fmt.pct(r.load.prefix_hits / r.load.prefix_lookups) : '–' }),
          el('td', { class: 'num', text: fmt.int(r.requests) }),
          el('td', { class: 'num', text: fmt.int(r.failures) })));
      }
    }
    const table = el('table', {},
      el('thead', {}, el('tr', {}, ...['Cluster', 'Replica', 'State', 'Running / waiting', 'In flight', 'KV cache', 'Prefix hits', 'Requests', 'Failures']
        .map((h, i) => el('th', { class: i >= 3 ? 'num' : null, text: h })))),
      el('tbody', {}, ...rows));
    return [el('dl', { class: 'facts' }, ...facts), el('div', { class: 'table-wrap' }, table)];
  }

  function scaleForm(d) {
    const form = el('form', { class: 'scale' },
      el('label', { class: 'inline' }, 'Min replicas', el('input', { name: 'min', type: 'number', min: 0, max: 64, step: 1 })),
      el('label', { class: 'inline' }, 'Max replicas', el('input', { name: 'max', type: 'number', min: 1, max: 64, step: 1 })),
      el('button', { type: 'submit', text: 'Save' }),
      el('span', { class: 'status muted' }),
      el('span', { class: 'config muted small' }));
    form.addEventListener('input', () => { form.dataset.dirty = '1'; });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const status = form.querySelector('.status');
      const min = Number(form.elements.min.value), max = Number(form.elements.max.value);
      if (!Number.isInteger(min) || !Number.isInteger(max)) {
        status.className = 'status error';
        status.textContent = 'Min and max must be whole numbers.';
        return;
      }
      try {
        await getJSON('/v1/deployments/' + encodeURIComponent(d.name), {
          method: 'PATCH', body: JSON.stringify({ replicas: { min, max } }),
        });
        delete form.dataset.dirty;
        status.className = 'status muted';
        status.textContent = 'Saved: ' + min + '–' + max + '.';
        loadDeployments();
      } catch (e) {
        status.className = 'status error';
        status.textContent = e.message;
      }
    });
    return form;
  }

  // MARK: Live metrics

  const charts = {
    tokens: { id: 'chart-tokens', series: [{ name: 'output tokens/s', pick: (s) => s.output_tokens_per_second }] },
    ttft: { id: 'chart-ttft', series: [
      { name: 'p50', pick: (s) => s.ttft && s.ttft.p50 },
      { name: 'p90', pick: (s) => s.ttft && s.ttft.p90 },
      { name: 'p99', pick: (s) => s.ttft && s.ttft.p99 }] },
    tpot: { id: 'chart-tpot', series: [
      { name: 'p50', pick: (s) => s.tpot && s.tpot.p50 * 1000 },
      { name: 'p90', pick: (s) => s.tpot && s.tpot.p90 * 1000 },
      { name: 'p99', pick: (s) => s.tpot && s.tpot.p99 * 1000 }] },
    queue: { id: 'chart-queue', series: [
      { name: 'waiting', pick: (s) => s.queue_depth },
      { name: 'running', pick: (s) => s.running }] },
    errors: { id: 'chart-errors', series: [{ name: 'errors', pick: (s) => s.errors, color: '#d92d20' }] },
  };

  function startMetrics() {
    state.history = [];
    for (const c of Object.values(charts)) SwiftletChart.legend($(c.id).nextElementSibling, c.series);
    connectFeed();
  }

  function feedState(text, live) {
    $('feed-state').textContent = text;
    $('feed-state').classList.toggle('live', !!live);
  }

  // One server-sent-events connection (fetch, so that the key goes in a header); reconnects after 2 s.
  async function connectFeed() {
    const controller = new AbortController();
    state.feed = controller;
    feedState('connecting…');
    try {
      const r = await request('/v1/console/metrics/stream', { signal: controller.signal });
      if (!r.ok) throw await failure(r);
      feedState('live', true);
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const raw = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let name = 'message', data = '';
          for (const line of raw.split('\n')) {
            if (line.startsWith('event:')) name = line.slice(6).trim();
            else if (line.startsWith('data:')) data += line.slice(5).replace(/^ /, '');
          }
          if (!data) continue;
          const value = JSON.parse(data);
          if (name === 'history') state.history = value;
          else state.history.push(value);
          if (state.history.length > 600) state.history.splice(0, state.history.length - 600);
          renderMetrics();
        }
      }
      if (state.feed === controller) feedState('feed ended; reconnecting…');
    } catch (e) {
      if (controller.signal.aborted) return;
      if (e.status === 401 || e.status === 403) {
        feedState(e.message);
        return;
      }
      feedState('disconnected (' + e.message + '); reconnecting…');
    }
    if (state.feed === controller) {
      setTimeout(() => { if (state.feed === controller) connectFeed(); }, 2000);
    }
  }

  function renderMetrics() {
    const h = state.history;
    if (!h.length) return;
    const windowSeconds = Number($('mt-window').value);
    const end = h[h.length - 1].time;
    const times = h.map((s) => s.time);
    for (const c of Object.values(charts)) {
      const series = c.series.map((s) => ({ name: s.name, color: s.color, values: h.map((x) => { const v = s.pick(x); return v == null ? null : v; }) }));
      SwiftletChart.draw($(c.id), series, times, end, windowSeconds);
    }
    const last = h[h.length - 1];
    const recent = h.filter((s) => s.time > end - windowSeconds);
    const tokens = recent.reduce((a, s) => a + s.output_tokens_per_second * s.interval, 0);
    const seconds = recent.reduce((a, s) => a + s.interval, 0) || 1;
    $('tile-tps').textContent = fmt.num(last.output_tokens_per_second, 1) + ' (avg ' + fmt.num(tokens / seconds, 1) + ')';
    $('tile-ttft').textContent = last.ttft ? fmt.seconds(last.ttft.p50) + ' / ' + fmt.seconds(last.ttft.p99) : '–';
    $('tile-tpot').textContent = last.tpot ? fmt.seconds(last.tpot.p50) + ' / ' + fmt.seconds(last.tpot.p99) : '–';
    $('tile-queue').textContent = last.queue_depth + ' / ' + last.running;
    $('tile-errors').textContent = fmt.int(last.total_requests) + ' / ' + fmt.int(last.total_errors);
  }

  // MARK: Usage

  function startUsage() {
    loadUsage();
    state.usageTimer = setInterval(() => { if (!document.hidden) loadUsage(); }, 10000);
  }

  function period() {
    const now = new Date();
    const choice = $('usage-period').value;
    if (choice === '1h') return [new Date(now - 3600e3), null];
    if (choice === '24h') return [new Date(now - 86400e3), null];
    if (choice === '7d') return [new Date(now - 7 * 86400e3), null];
    if (choice === 'month') return [new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)), null];
    const from = $('usage-from').value, to = $('usage-to').value;
    if (!from) throw new Error('Pick the first day of the period.');
    const until = to ? new Date(new Date(to + 'T00:00:00Z').getTime() + 86400e3) : null;
    return [new Date(from + 'T00:00:00Z'), until];
  }

  async function loadUsage(event) {
    if (event) event.preventDefault();
    let since, until;
    try {
      [since, until] = period();
    } catch (e) {
      show($('usage-error'), e.message);
      return;
    }
    const q = new URLSearchParams({ since: since.toISOString() });
    if (until) q.set('until', until.toISOString());
    try {
      const u = await getJSON('/v1/console/usage?' + q);
      if (state.page !== 'usage') return;
      show($('usage-error'), '');
      renderUsage(u);
    } catch (e) {
      show($('usage-error'), 'Cannot load usage: ' + e.message);
    }
  }

  function renderUsage(u) {
    const serve = u.server === 'serve';
    $('usage-form').hidden = serve;
    const notes = [];
    if (u.note) notes.push(u.note);
    if (u.scope === 'key') notes.push('Only this key\'s usage is shown (an admin key sees every key).');
    show($('usage-note'), notes.join(' '));
    $('usage-range').textContent = fmt.time(u.since) + ' – ' + fmt.time(u.until);
    const tbody = $('usage-table').tBodies[0];
    const rows = u.rows.map((r) => el('tr', { 'data-key': r.key_id, 'data-deployment': r.deployment },
      el('td', {}, el('span', { text: r.key_name }), el('span', { class: 'muted small', text: r.key_name === r.key_id ? '' : '  ' + r.key_id })),
      el('td', { text: r.deployment }),
      el('td', { class: 'num', text: fmt.int(r.requests) }),
      el('td', { class: 'num', text: fmt.int(r.failed != null ? r.failed : r.errors) }),
      el('td', { class: 'num', text: fmt.int(r.prompt_tokens) }),
      el('td', { class: 'num', text: fmt.int(r.completion_tokens) }),
      el('td', { class: 'num', text: r.cost == null ? 'no price' : fmt.money(r.cost) })));
    tbody.replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { class: 'empty', colSpan: 7, text: 'No requests in this period.' }))]));
    const sum = (k) => u.rows.reduce((a, r) => a + (r[k] || 0), 0);
    $('usage-table').tFoot.replaceChildren(u.rows.length > 1 ? el('tr', {}, el('td', { text: 'Total' }), el('td'),
      el('td', { class: 'num', text: fmt.int(sum('requests')) }), el('td', { class: 'num', text: fmt.int(sum('failed') || sum('errors')) }),
      el('td', { class: 'num', text: fmt.int(sum('prompt_tokens')) }), el('td', { class: 'num', text: fmt.int(sum('completion_tokens')) }),
      el('td', { class: 'num', text: serve ? 'no price' : fmt.money(sum('cost')) })) : '');

    const costs = u.deployments || [];
    $('usage-costs').hidden = !costs.length;
    $('cost-table').tBodies[0].replaceChildren(...costs.map((d) => el('tr', { 'data-deployment': d.deployment },
      el('td', { text: d.deployment }),
      el('td', { class: 'num', text: fmt.int(d.prompt_tokens + d.completion_tokens) }),
      el('td', { class: 'num', text: fmt.money(d.input_per_million) }),
      el('td', { class: 'num', text: fmt.money(d.output_per_million) }),
      el('td', { class: 'num', text: fmt.money(d.configured_cost_per_million_tokens) }),
      el('td', { class: 'num', text: d.measured_cost_per_million_tokens == null ? (d.replica_hours == null ? 'admin only' : '–') : fmt.money(d.measured_cost_per_million_tokens) }),
      el('td', { class: 'num', text: d.replica_hours == null ? '–' : fmt.num(d.replica_hours, 3) }),
      el('td', { class: 'num', text: d.hardware_dollars == null ? '–' : fmt.money(d.hardware_dollars) }))));
  }

  // MARK: Wiring

  function bind() {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', () => signOut());
    $('nav-toggle').addEventListener('click', () => {
      const open = $('nav').classList.toggle('open');
      $('nav-toggle').setAttribute('aria-expanded', String(open));
    });
    window.addEventListener('hashchange', route);
    $('pg-form').addEventListener('submit', send);
    $('pg-input').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) send(e);
    });
    $('pg-stop').addEventListener('click', () => state.abort && state.abort.abort());
    $('pg-clear').addEventListener('click', () => {
      state.messages = [];
      $('pg-transcript').replaceChildren(el('p', { class: 'empty muted', text: 'Pick a deployment and send a message.' }));
      resetStats();
      show($('pg-error'), '');
    });
    $('pg-schema').value = JSON.stringify(DEFAULT_SCHEMA, null, 2);
    $('pg-json').addEventListener('change', () => { $('pg-schema-box').hidden = !$('pg-json').checked; });
    $('pg-code').addEventListener('click', showCode);
    for (const r of document.querySelectorAll('input[name="pg-mode"]')) r.addEventListener('change', () => setMode(r.value));
    $('em-compare').addEventListener('click', compareEmbeddings);
    $('code-close').addEventListener('click', () => $('code-dialog').close());
    for (const b of document.querySelectorAll('#code-dialog .tabs button')) b.addEventListener('click', () => tab(b.dataset.tab));
    $('code-copy').addEventListener('click', async () => {
      const text = $('code-curl').hidden ? $('code-python').textContent : $('code-curl').textContent;
      try {
        await navigator.clipboard.writeText(text);
        $('code-copy').textContent = 'Copied';
      } catch (_) {
        $('code-copy').textContent = 'Select the text to copy';
      }
      setTimeout(() => { $('code-copy').textContent = 'Copy'; }, 1500);
    });
    $('mt-window').addEventListener('change', renderMetrics);
    window.addEventListener('resize', () => { if (state.page === 'metrics') renderMetrics(); });
    $('usage-form').addEventListener('submit', loadUsage);
    $('usage-period').addEventListener('change', () => {
      const custom = $('usage-period').value === 'custom';
      for (const l of document.querySelectorAll('#usage-form .custom')) l.hidden = !custom;
      if (!custom) loadUsage();
    });
    if (window.matchMedia('(max-width: 860px)').matches) $('pg-settings').open = false;
  }

  start();
})();
