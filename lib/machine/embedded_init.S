/* flick-init (guest/init), built for this library and embedded in it: see embedded_init.h. */
  .section .rodata.flick_init, "a"
  .balign 64
  .globl flick_embedded_init_begin
  .hidden flick_embedded_init_begin
flick_embedded_init_begin:
  .incbin FLICK_INIT_PATH
  .globl flick_embedded_init_end
  .hidden flick_embedded_init_end
flick_embedded_init_end:
  .section .note.GNU-stack, "", @progbits
