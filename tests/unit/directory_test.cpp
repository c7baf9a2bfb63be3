// Opening a data directory: one writer at a time, and data that went missing, was cut
// short or belongs elsewhere is refused with a clear message (hardening issue #8,
// defects 1 and 5).
#include "test_support.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace holdfast::testing {
namespace {

class directory_test : public ::testing::Test {
protected:
  std::unique_ptr<storage> open(std::string& error, bool read_only = false,
                                 const std::string& path = {}) {
    storage_options o;
    o.path = path.empty() ? data_ : path;
    o.map_size_bytes = size_t{64} << 20;
    o.read_only = read_only;
    return storage::open(o, error);
  }
  // A directory with some committed data, closed again.
  void populate() {
    std::string error;
    auto env = open(error);
    ASSERT_TRUE(env) << error;
    std::vector<mutation> batch;
    for (int i = 0; i < 300; ++i) {
      sku_record r;
      r.sku.sku = "sku-" + std::to_string(i);
      r.sku.on_hand = r.sku.stocked = 5;
      batch = {mutation{mutation::put_sku, r, {}}};
      std::vector<store_status> status;
      ASSERT_EQ(env->commit({{&batch, 1}}, status), store_status::ok);
    }
  }
  static bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  }

  temp_dir dir_;
  std::string data_ = dir_.path() + "/data";
};

TEST_F(directory_test, a_second_writer_is_refused_while_the_first_lives) {
  std::string error;
  auto first = open(error);
  ASSERT_TRUE(first) << error;
  auto second = open(error);
  EXPECT_FALSE(second);
  EXPECT_TRUE(contains(error, "in use by another Holdfast process")) << error;
  EXPECT_TRUE(contains(error, std::to_string(getpid()))) << error;
  // Deleting the pid file does not let a second writer in: the lock is the directory's.
  std::filesystem::remove(data_ + "/holdfast.lock");
  EXPECT_FALSE(open(error));
  EXPECT_TRUE(contains(error, "in use by another Holdfast process")) << error;
  // Readers (backup, check) need no lock.
  EXPECT_TRUE(open(error, true)) << error;
  // A backup onto a live directory, or inside it, is refused.
  EXPECT_EQ(first->backup(data_, error), store_status::io_error);
  EXPECT_EQ(first->backup(data_ + "/sub", error), store_status::io_error);
  EXPECT_TRUE(contains(error, "inside the data directory")) << error;
  EXPECT_FALSE(std::filesystem::exists(data_ + "/sub"));
  first.reset();
  EXPECT_TRUE(open(error)) << error;
}

TEST_F(directory_test, lost_or_cut_data_is_refused_and_nothing_is_created) {
  populate();
  auto file = data_ + "/data.mdb";
  auto full = std::filesystem::file_size(file);
  std::string error;

  ASSERT_EQ(truncate(file.c_str(), static_cast<off_t>(full / 2)), 0);
  EXPECT_FALSE(open(error));
  EXPECT_TRUE(contains(error, "truncated")) << error;

  ASSERT_EQ(truncate(file.c_str(), 0), 0);
  EXPECT_FALSE(open(error));
  EXPECT_TRUE(contains(error, "empty")) << error;

  std::filesystem::remove(file);
  EXPECT_FALSE(open(error));
  EXPECT_TRUE(contains(error, "missing")) << error;
  EXPECT_FALSE(std::filesystem::exists(file)) << "a refused open created data";
  // Without the marker too, LMDB's lock file still says the data was there.
  std::filesystem::remove(data_ + "/holdfast.format");
  EXPECT_FALSE(open(error));
  EXPECT_TRUE(contains(error, "lost its data")) << error;
  EXPECT_FALSE(std::filesystem::exists(file));

  // A typo in a reader's path creates nothing.
  EXPECT_FALSE(open(error, true, dir_.path() + "/typo"));
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/typo"));
}

TEST_F(directory_test, data_of_another_directory_and_foreign_directories_are_refused) {
  populate();
  std::string other = dir_.path() + "/other", error;
  {
    auto env = open(error, false, other);
    ASSERT_TRUE(env) << error;
  }
  std::filesystem::copy_file(other + "/data.mdb", data_ + "/data.mdb",
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_FALSE(open(error));
  EXPECT_TRUE(contains(error, "belongs to another data directory")) << error;

  auto foreign = dir_.path() + "/foreign";
  std::filesystem::create_directories(foreign);
  std::ofstream(foreign + "/notes.txt") << "not ours";
  EXPECT_FALSE(open(error, false, foreign));
  EXPECT_TRUE(contains(error, "not a Holdfast data directory")) << error;
}

TEST_F(directory_test, a_backup_goes_to_an_empty_directory_and_opens_as_a_copy) {
  populate();
  std::string error;
  auto env = open(error, true);
  ASSERT_TRUE(env) << error;
  auto copy = dir_.path() + "/copy";
  ASSERT_EQ(env->backup(copy, error), store_status::ok) << error;
  EXPECT_EQ(env->backup(copy, error), store_status::io_error) << "a second backup overwrote it";
  EXPECT_TRUE(contains(error, "not empty")) << error;
  auto restored = open(error, false, copy);
  ASSERT_TRUE(restored) << error;
  sku_record r;
  EXPECT_EQ(restored->read_sku("sku-299", r), store_status::ok);
  EXPECT_TRUE(restored->check().problems.empty());
}

TEST_F(directory_test, a_flipped_byte_in_a_record_is_caught_by_its_checksum) {
  populate();
  sku_record r;
  r.sku.sku = "sku-123";
  r.sku.on_hand = r.sku.stocked = 5;
  // A bit inside the record's data section.
  ASSERT_GT(edit_every_copy(data_ + "/data.mdb", encode(r),
                            [](std::string& bytes, size_t at) { bytes[at + 8] ^= 0x01; }),
            0u);
  std::string error;
  auto env = open(error, true);
  ASSERT_TRUE(env) << error;
  EXPECT_EQ(env->read_sku("sku-123", r), store_status::corrupt);
  auto report = env->check();
  ASSERT_FALSE(report.problems.empty());
  EXPECT_TRUE(contains(report.problems[0], "sku-123")) << report.problems[0];
}

}  // namespace
}  // namespace holdfast::testing
