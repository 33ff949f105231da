//! The end of a 512-bit kernel.

#[cfg(target_arch = "x86_64")]
/// Zeroes ZMM16–31 and the upper halves of the other vector registers. Registers 16–31 left
/// non-zero by a 512-bit kernel keep the core in its 512-bit mode (lower clock, a vector port
/// shut) after the kernel has returned — measured: decoding after a prefill through the
/// AVX-512 Q4 tiles ran at half speed — and `vzeroupper`, which the compiler adds, does not
/// clear them. Kernels that use them call this before handing the thread back.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn clear_upper_state() {
    std::arch::asm!(
        "vpxord zmm16, zmm16, zmm16",
        "vpxord zmm17, zmm17, zmm17",
        "vpxord zmm18, zmm18, zmm18",
        "vpxord zmm19, zmm19, zmm19",
        "vpxord zmm20, zmm20, zmm20",
        "vpxord zmm21, zmm21, zmm21",
        "vpxord zmm22, zmm22, zmm22",
        "vpxord zmm23, zmm23, zmm23",
        "vpxord zmm24, zmm24, zmm24",
        "vpxord zmm25, zmm25, zmm25",
        "vpxord zmm26, zmm26, zmm26",
        "vpxord zmm27, zmm27, zmm27",
        "vpxord zmm28, zmm28, zmm28",
        "vpxord zmm29, zmm29, zmm29",
        "vpxord zmm30, zmm30, zmm30",
        "vpxord zmm31, zmm31, zmm31",
        "vzeroupper",
        out("zmm16") _, out("zmm17") _, out("zmm18") _, out("zmm19") _,
        out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
        out("zmm24") _, out("zmm25") _, out("zmm26") _, out("zmm27") _,
        out("zmm28") _, out("zmm29") _, out("zmm30") _, out("zmm31") _,
        options(nomem, nostack, preserves_flags),
    );
}
