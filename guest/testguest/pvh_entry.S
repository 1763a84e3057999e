/* PVH entry (xen/include/public/arch-x86/hvm/start_info.h): 32-bit protected mode, paging off,
 * EBX = struct hvm_start_info. The ELF note below tells the loader where this is. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define BOOT_PVH 1

  .section .note.Xen, "a", @note
  .balign 4
  .long 4                         /* namesz: "Xen\0" */
  .long 4                         /* descsz */
  .long XEN_ELFNOTE_PHYS32_ENTRY
  .asciz "Xen"
  .balign 4
  .long pvh_start32
  .balign 4

  .section .text
  .code32
  .globl pvh_start32
pvh_start32:
  movl %ebx, %esi
  movl $BOOT_PVH, %edi
  jmp enter_long_mode
