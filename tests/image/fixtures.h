// Test images built with real tools: python3 tarfile (make_layers.py), GNU tar, umoci, skopeo.
#pragma once

#include "tree.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace flick::test {

inline std::string q(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

// Writes make_layers.py's tars into `dir`, plus sparse.tar (GNU tar --sparse, PAX format).
inline void make_layers(const std::filesystem::path& dir) {
  ASSERT_EQ(run("python3 " FLICK_IMAGE_TEST_DIR "/make_layers.py " + q(dir)), 0);
  auto src = dir / "sparse-src";
  std::filesystem::create_directories(src);
  ASSERT_EQ(run("cd " + q(src) + " && truncate -s 8M sparse && printf middle | dd of=sparse bs=1 seek=4194304 conv=notrunc status=none"
                " && printf tail | dd of=sparse bs=1 seek=8388604 conv=notrunc status=none"
                " && tar --sparse --format=pax -cf ../sparse.tar sparse"), 0);
}

// Creates (or extends) the OCI layout `layout` with image `tag` made of `layers`.
inline void make_image(const std::filesystem::path& layout, const std::string& tag,
                       const std::vector<std::filesystem::path>& layers,
                       const std::string& config_args = "") {
  if (!std::filesystem::exists(layout / "oci-layout")) {
    ASSERT_EQ(run("umoci init --layout " + q(layout)), 0);
  }
  const std::string image = q(layout.string() + ":" + tag);
  ASSERT_EQ(run("umoci new --image " + image), 0);
  for (const auto& l : layers) ASSERT_EQ(run("umoci raw add-layer --image " + image + " " + q(l)), 0);
  if (!config_args.empty()) {
    ASSERT_EQ(run("umoci config --image " + image + " " + config_args), 0);
  }
}

inline Tree umoci_tree(const std::filesystem::path& layout, const std::string& tag,
                       const std::filesystem::path& bundle) {
  EXPECT_EQ(run("umoci unpack --image " + q(layout.string() + ":" + tag) + " " + q(bundle)), 0);
  return read_host_tree(bundle / "rootfs");
}

inline void expect_fsck_clean(const std::filesystem::path& image) {
  std::string out;
  EXPECT_EQ(run("e2fsck -fn " + q(image), &out), 0) << out;
}

}  // namespace flick::test
