/* 32-bit protected mode (paging off, flat segments) -> 64-bit long mode, then testguest_main.
 * In: EDI = enum boot_entry, ESI = boot structure address. Never returns. (SDM vol. 3A 9.8.5)
 */
#define CR0_PE 0x00000001
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100
#define PTE_P_RW 0x3
#define PDE_2M 0x83      /* present, writable, 2 MiB page */
#define PDE_2M_UC 0x9b   /* ... with PWT|PCD, for the MMIO gigabyte */

  .section .text
  .code32
  .globl enter_long_mode
enter_long_mode:
  cli
  cld
  lgdt gdt_descriptor
  movl %cr4, %eax
  orl $CR4_PAE, %eax
  movl %eax, %cr4
  movl $pml4, %eax
  movl %eax, %cr3
  movl $MSR_EFER, %ecx
  rdmsr
  orl $EFER_LME, %eax
  wrmsr
  movl %cr0, %eax
  orl $(CR0_PG | CR0_PE), %eax
  movl %eax, %cr0
  ljmp $0x08, $1f
  .code64
1:
  movl $0x10, %eax
  movl %eax, %ds
  movl %eax, %es
  movl %eax, %ss
  movl %eax, %fs
  movl %eax, %gs
  movl %edi, %edi   /* the upper halves are undefined after the mode switch */
  movl %esi, %esi
  jmp start64

/* Shared 64-bit start: stack, then the C body. EDI/RSI already hold its arguments. */
  .globl start64
start64:
  movq $stack_top, %rsp
  xorl %ebp, %ebp
  call testguest_main
2:
  cli
  hlt
  jmp 2b

  .section .rodata
  .balign 8
gdt:
  .quad 0
  .quad 0x00af9a000000ffff  /* 0x08: 64-bit code */
  .quad 0x00cf92000000ffff  /* 0x10: flat data */
gdt_end:
  .balign 8
gdt_descriptor:
  .word gdt_end - gdt - 1
  .long gdt

/* Identity map of the first 4 GiB with 2 MiB pages, built by the assembler so the guest spends
 * no instructions on it. */
  .section .data
  .balign 4096
pml4:
  .quad pdpt + PTE_P_RW
  .fill 511, 8, 0
pdpt:
  .quad pd + PTE_P_RW
  .quad pd + 0x1000 + PTE_P_RW
  .quad pd + 0x2000 + PTE_P_RW
  .quad pd + 0x3000 + PTE_P_RW
  .fill 508, 8, 0
pd:
  .set page, 0
  .rept 512 * 3
  .quad (page << 21) + PDE_2M
  .set page, page + 1
  .endr
  .rept 512
  .quad (page << 21) + PDE_2M_UC
  .set page, page + 1
  .endr

  .section .bss
  .balign 16
stack:
  .skip 16384
stack_top:
