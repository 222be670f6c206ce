// Causal self-attention (attention.c), shared by the onnxruntime custom op (ort.c) and the test entry point.
#ifndef SEEDSCOPE_ATTENTION_H
#define SEEDSCOPE_ATTENTION_H
#include <stdint.h>

// The output is [batch, positions, hidden = heads · d_head], float32, contiguous. q, k and v hold one row of hidden
// values per (batch row, position), `stride` values apart: hidden for three tensors of their own, 3 · hidden for
// one tensor [batch, positions, q | k | v] (then k = q + hidden, v = q + 2 · hidden).
typedef struct {
  int64_t batch, positions, heads, d_head;
  int64_t stride;
  float scale;        // scores are scale · (q · k)
  const float* bias;  // NULL, or the 3 · hidden biases of q | k | v, added to the inputs first
  int portable;       // 1: the portable path even where the vectorized one serves (tests compare the two)
} AttentionShape;

// One (batch row, head) of the output: item = b · heads + h. Items are independent, so threads may take any of them.
// 0 when scratch memory could not be had.
int causal_attention_item(const AttentionShape* s, const float* q, const float* k, const float* v, float* out, int64_t item);
#endif
