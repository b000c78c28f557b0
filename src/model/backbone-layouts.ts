/**
 * Maps the two public ViT checkpoint layouts (Hugging Face, timm) onto one canonical set of
 * weights, checking every tensor's presence and shape against the config. Weights stay in
 * PyTorch's layout here (Linear: [out, in]); backbone.ts rearranges them for tfjs.
 */
import { AppError } from '../errors.js';
import { hfBackboneConfig, timmBackboneConfig, type BackboneConfig, type BackboneLayout } from './backbone-config.js';
import type { SafetensorsTensor } from './safetensors.js';

export interface CanonicalBlock {
  ln1g: Float32Array; ln1b: Float32Array;
  wq: Float32Array; bq: Float32Array;
  wk: Float32Array; bk: Float32Array;
  wv: Float32Array; bv: Float32Array;
  wo: Float32Array; bo: Float32Array;
  ln2g: Float32Array; ln2b: Float32Array;
  w1: Float32Array; b1: Float32Array;
  w2: Float32Array; b2: Float32Array;
}

export interface CanonicalWeights {
  cls: Float32Array;
  pos: Float32Array;
  /** [d, 3, p, p] as in PyTorch's Conv2d. */
  patchW: Float32Array;
  patchB: Float32Array;
  normG: Float32Array;
  normB: Float32Array;
  blocks: CanonicalBlock[];
}

type Tensors = Map<string, SafetensorsTensor>;

const fail = (msg: string): never => {
  throw new AppError('invalid_backbone', msg);
};

const shapeStr = (s: number[]) => `[${s.join(', ')}]`;

type Getter = (name: string, shape: number[]) => Float32Array;
const NO_DATA = new Float32Array(0);

/** Checks that a tensor is there with this shape (failing with a message naming it) without reading its data. */
function check(tensors: Tensors, name: string, shape: number[], used: Set<string>): Float32Array {
  const t = tensors.get(name);
  if (!t) fail(`missing tensor '${name}'`);
  if (t!.shape.length !== shape.length || t!.shape.some((s, i) => s !== shape[i])) {
    fail(`tensor '${name}' has shape ${shapeStr(t!.shape)}, expected ${shapeStr(shape)}`);
  }
  used.add(name);
  return NO_DATA;
}

/** Fetches a tensor's data, failing with a message naming it when missing or misshaped. */
function take(tensors: Tensors, name: string, shape: number[], used: Set<string>): Float32Array {
  check(tensors, name, shape, used);
  return tensors.get(name)!.data;
}

/**
 * The blocks, each checked now (names and shapes) and read when it is first asked for — and again
 * at each ask, not kept: with a file read lazily (safetensors.ts openSafetensorsFile) only the
 * block in use is in memory, so the native engine's graphs can be built a block at a time.
 */
function lazyBlocks(depth: number, block: (i: number, g: Getter) => CanonicalBlock, dry: Getter, g: Getter): CanonicalBlock[] {
  for (let i = 0; i < depth; i++) block(i, dry);
  const blocks: CanonicalBlock[] = [];
  for (let i = 0; i < depth; i++) Object.defineProperty(blocks, i, { enumerable: true, get: () => block(i, g) });
  return blocks;
}

export function detectLayout(tensors: Tensors): { layout: BackboneLayout; prefix: string } {
  if (tensors.has('embeddings.cls_token')) return { layout: 'hf', prefix: '' };
  if (tensors.has('vit.embeddings.cls_token')) return { layout: 'hf', prefix: 'vit.' };
  if (tensors.has('cls_token') && tensors.has('pos_embed')) return { layout: 'timm', prefix: '' };
  return fail(
    'unknown backbone layout: expected a Hugging Face ViT (embeddings.cls_token, encoder.layer.*) ' +
      'or a timm ViT (cls_token, pos_embed, blocks.*) checkpoint',
  );
}

function checkLeftovers(tensors: Tensors, used: Set<string>, ignorable: RegExp): void {
  for (const name of tensors.keys()) {
    if (!used.has(name) && !ignorable.test(name)) {
      fail(`unexpected tensor '${name}': this ViT variant is not supported (plain pre-norm ViT with a cls token only)`);
    }
  }
}

export function readHf(
  tensors: Tensors,
  prefix: string,
  config: Record<string, unknown>,
  preprocessor: Record<string, unknown> | undefined,
): { config: BackboneConfig; weights: CanonicalWeights } {
  const cfg = hfBackboneConfig(config, preprocessor);
  const { width: d, mlpDim: m, patchSize: p, tokens: T } = cfg;
  const used = new Set<string>();
  const g = (name: string, shape: number[]) => take(tensors, prefix + name, shape, used);
  const zeros = new Float32Array(d);
  const block = (i: number, g: Getter): CanonicalBlock => {
    const l = `encoder.layer.${i}.`;
    const bias = (name: string) => (cfg.qkvBias ? g(name, [d]) : zeros);
    return {
      ln1g: g(`${l}layernorm_before.weight`, [d]), ln1b: g(`${l}layernorm_before.bias`, [d]),
      wq: g(`${l}attention.attention.query.weight`, [d, d]), bq: bias(`${l}attention.attention.query.bias`),
      wk: g(`${l}attention.attention.key.weight`, [d, d]), bk: bias(`${l}attention.attention.key.bias`),
      wv: g(`${l}attention.attention.value.weight`, [d, d]), bv: bias(`${l}attention.attention.value.bias`),
      wo: g(`${l}attention.output.dense.weight`, [d, d]), bo: g(`${l}attention.output.dense.bias`, [d]),
      ln2g: g(`${l}layernorm_after.weight`, [d]), ln2b: g(`${l}layernorm_after.bias`, [d]),
      w1: g(`${l}intermediate.dense.weight`, [m, d]), b1: g(`${l}intermediate.dense.bias`, [m]),
      w2: g(`${l}output.dense.weight`, [d, m]), b2: g(`${l}output.dense.bias`, [d]),
    };
  };
  const blocks = lazyBlocks(cfg.depth, block, (name, shape) => check(tensors, prefix + name, shape, used), g);
  const weights: CanonicalWeights = {
    cls: g('embeddings.cls_token', [1, 1, d]),
    pos: g('embeddings.position_embeddings', [1, T, d]),
    patchW: g('embeddings.patch_embeddings.projection.weight', [d, 3, p, p]),
    patchB: g('embeddings.patch_embeddings.projection.bias', [d]),
    normG: g('layernorm.weight', [d]),
    normB: g('layernorm.bias', [d]),
    blocks,
  };
  if (tensors.has(`${prefix}encoder.layer.${cfg.depth}.layernorm_before.weight`)) {
    fail(`checkpoint has more blocks than config.json's num_hidden_layers = ${cfg.depth}`);
  }
  // Classification heads and the pooler of ViTForImageClassification / ViTModel are not ours.
  checkLeftovers(tensors, used, /^(vit\.)?(pooler\.|classifier\.|embeddings\.mask_token$)|^classifier\./);
  return { config: cfg, weights };
}

/**
 * One timm block's weights under the name prefix `l` (width d, MLP m); `noBias`: the zeros that
 * stand in for q/k/v biases when the checkpoint has none. Also read by Swin's timm layout.
 */
export function timmBlock(g: (name: string, shape: number[]) => Float32Array, l: string, d: number, m: number, noBias: Float32Array | null): CanonicalBlock {
  // timm stacks q, k, v on the output axis: rows [0,d) are q, [d,2d) k, [2d,3d) v.
  const qkv = g(`${l}attn.qkv.weight`, [3 * d, d]);
  const qkvB = noBias ?? g(`${l}attn.qkv.bias`, [3 * d]);
  return {
    ln1g: g(`${l}norm1.weight`, [d]), ln1b: g(`${l}norm1.bias`, [d]),
    wq: qkv.subarray(0, d * d), bq: qkvB.subarray(0, d),
    wk: qkv.subarray(d * d, 2 * d * d), bk: qkvB.subarray(d, 2 * d),
    wv: qkv.subarray(2 * d * d), bv: qkvB.subarray(2 * d),
    wo: g(`${l}attn.proj.weight`, [d, d]), bo: g(`${l}attn.proj.bias`, [d]),
    ln2g: g(`${l}norm2.weight`, [d]), ln2b: g(`${l}norm2.bias`, [d]),
    w1: g(`${l}mlp.fc1.weight`, [m, d]), b1: g(`${l}mlp.fc1.bias`, [m]),
    w2: g(`${l}mlp.fc2.weight`, [d, m]), b2: g(`${l}mlp.fc2.bias`, [d]),
  };
}

export function readTimm(tensors: Tensors, config: Record<string, unknown>): { config: BackboneConfig; weights: CanonicalWeights } {
  const cls = tensors.get('cls_token')!;
  if (cls.shape.length !== 3 || cls.shape[0] !== 1 || cls.shape[1] !== 1) {
    fail(`tensor 'cls_token' has shape ${shapeStr(cls.shape)}, expected [1, 1, width]`);
  }
  const d = cls.shape[2];
  const pos = tensors.get('pos_embed')!;
  if (pos.shape.length !== 3 || pos.shape[0] !== 1 || pos.shape[2] !== d) {
    fail(`tensor 'pos_embed' has shape ${shapeStr(pos.shape)}, expected [1, tokens, ${d}]`);
  }
  const proj = tensors.get('patch_embed.proj.weight');
  if (!proj) fail("missing tensor 'patch_embed.proj.weight'");
  const p = proj!.shape[2] ?? 0;
  if (proj!.shape.length !== 4 || proj!.shape[0] !== d || proj!.shape[1] !== 3 || p < 1 || proj!.shape[3] !== p) {
    fail(`tensor 'patch_embed.proj.weight' has shape ${shapeStr(proj!.shape)}, expected [${d}, 3, patch, patch]`);
  }
  let depth = 0;
  while (tensors.has(`blocks.${depth}.norm1.weight`)) depth++;
  if (depth === 0) fail("missing tensor 'blocks.0.norm1.weight'");
  const fc1 = tensors.get('blocks.0.mlp.fc1.weight');
  if (!fc1) fail("missing tensor 'blocks.0.mlp.fc1.weight'");
  const cfg = timmBackboneConfig(config, {
    width: d,
    depth,
    tokens: pos.shape[1],
    patchSize: p,
    mlpDim: fc1!.shape[0],
    hasQkvBias: tensors.has('blocks.0.attn.qkv.bias'),
  });
  const m = cfg.mlpDim;
  const used = new Set<string>();
  const g = (name: string, shape: number[]) => take(tensors, name, shape, used);
  const zeros = new Float32Array(3 * d);
  const block = (i: number, g: Getter): CanonicalBlock => timmBlock(g, `blocks.${i}.`, d, m, cfg.qkvBias ? null : zeros);
  const blocks = lazyBlocks(depth, block, (name, shape) => check(tensors, name, shape, used), g);
  // Average-pool timm models name their final norm fc_norm (and have no `norm`); same role here.
  const normName = tensors.has('norm.weight') || !tensors.has('fc_norm.weight') ? 'norm' : 'fc_norm';
  const weights: CanonicalWeights = {
    cls: g('cls_token', [1, 1, d]),
    pos: g('pos_embed', [1, cfg.tokens, d]),
    patchW: g('patch_embed.proj.weight', [d, 3, p, p]),
    patchB: g('patch_embed.proj.bias', [d]),
    normG: g(`${normName}.weight`, [d]),
    normB: g(`${normName}.bias`, [d]),
    blocks,
  };
  checkLeftovers(tensors, used, /^head\./);
  return { config: cfg, weights };
}
