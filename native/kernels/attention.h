// Causal self-attention (attention.c), shared by the onnxruntime custom op (ort.c) and the test entry point.
#ifndef SEEDSCOPE_ATTENTION_H
#define SEEDSCOPE_ATTENTION_H
#include <stdint.h>

// q, k, v and the output are [batch, positions, heads · d_head], float32, contiguous.
typedef struct {
  int64_t batch, positions, heads, d_head;
  float scale;   // scores are scale · (q · k)
  int portable;  // 1: the portable path even where the vectorized one serves (tests compare the two)
} AttentionShape;

// One (batch row, head) of the output: item = b · heads + h. Items are independent, so threads may take any of them.
// 0 when scratch memory could not be had.
int causal_attention_item(const AttentionShape* s, const float* q, const float* k, const float* v, float* out, int64_t item);
#endif
