"""Internal: the CPU kernels of the transformers backend: the decoder's linear layers on oneDNN
(float32) or in int8, swapped in by one walk over the decoder; torch's vector math, set up
on one thread before the first forward pass; and the thread count of each pass on cores that
other processes share."""
