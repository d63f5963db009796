#include "mesh/pubsub/topic_name.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mesh {
namespace pubsub {
namespace {

using ::testing::HasSubstr;

TEST(TopicNameTest, ValidNames) {
  for (const char* name : {"a", "camera/front", "robot_1/arm-2/joint.3", "A/B/C"}) {
    EXPECT_TRUE(ValidateTopicName(name).ok()) << name;
    EXPECT_TRUE(ValidatePattern(name).ok()) << name;
  }
  EXPECT_TRUE(ValidateTopicName(std::string(64, 'x')).ok());
  EXPECT_TRUE(ValidateTopicName(std::string(255, 'x').replace(64, 1, "/").replace(129, 1, "/").replace(194, 1, "/"))
                  .ok());
}

TEST(TopicNameTest, InvalidNamesSayWhy) {
  EXPECT_THAT(std::string(ValidateTopicName("").message()), HasSubstr("empty"));
  EXPECT_THAT(std::string(ValidateTopicName("/a").message()), HasSubstr("empty segment"));
  EXPECT_THAT(std::string(ValidateTopicName("a/").message()), HasSubstr("empty segment"));
  EXPECT_THAT(std::string(ValidateTopicName("a//b").message()), HasSubstr("empty segment"));
  EXPECT_THAT(std::string(ValidateTopicName("a b").message()), HasSubstr("outside [A-Za-z0-9_.-]"));
  EXPECT_THAT(std::string(ValidateTopicName("a/*").message()), HasSubstr("wildcards are for subscriptions"));
  EXPECT_THAT(std::string(ValidateTopicName(std::string(65, 'x')).message()), HasSubstr("limit is 64"));
  EXPECT_THAT(std::string(ValidateTopicName(std::string(256, 'x')).message()), HasSubstr("limit is 255"));
  EXPECT_TRUE(ValidateTopicName("plan", "service").ok());
  EXPECT_THAT(std::string(ValidateTopicName("x/", "service").message()), HasSubstr("service"));
  EXPECT_THAT(std::string(ValidatePattern("a*").message()), HasSubstr("whole segment"));
  EXPECT_THAT(std::string(ValidatePattern("a/***").message()), HasSubstr("whole segment"));
  EXPECT_THAT(std::string(ValidateTopicName(std::string("a\0b", 3)).message()), HasSubstr("\\x00"));
  EXPECT_TRUE(ValidatePattern("*/b/**").ok());
  EXPECT_TRUE(ValidatePattern("**").ok());
}

TEST(TopicNameTest, Matching) {
  EXPECT_TRUE(PatternMatches("a/b", "a/b"));
  EXPECT_FALSE(PatternMatches("a/b", "a/c"));
  EXPECT_FALSE(PatternMatches("a/b", "a/b/c"));
  EXPECT_TRUE(PatternMatches("a/*", "a/b"));
  EXPECT_FALSE(PatternMatches("a/*", "a"));
  EXPECT_FALSE(PatternMatches("a/*", "a/b/c"));
  EXPECT_TRUE(PatternMatches("*/b", "a/b"));
  EXPECT_TRUE(PatternMatches("a/**", "a"));
  EXPECT_TRUE(PatternMatches("a/**", "a/b"));
  EXPECT_TRUE(PatternMatches("a/**", "a/b/c/d"));
  EXPECT_FALSE(PatternMatches("a/**", "b/a"));
  EXPECT_TRUE(PatternMatches("**", "x"));
  EXPECT_TRUE(PatternMatches("**", "x/y/z"));
  EXPECT_TRUE(PatternMatches("**/status", "robot/arm/status"));
  EXPECT_TRUE(PatternMatches("**/status", "status"));
  EXPECT_FALSE(PatternMatches("**/status", "robot/status/x"));
  EXPECT_TRUE(PatternMatches("robot/**/status", "robot/status"));
  EXPECT_TRUE(PatternMatches("robot/**/status", "robot/a/b/status"));
  EXPECT_FALSE(PatternMatches("robot/**/status", "robot/a/b/stat"));
  EXPECT_TRUE(PatternMatches("**/**/a", "a"));
  EXPECT_TRUE(PatternMatches("*/**", "a"));
  EXPECT_FALSE(PatternMatches("*/**", "a") && PatternMatches("*/*", "a"));
}

TEST(TopicNameTest, HostilePatternIsNotExponential) {
  // 64 "**" segments against a 120-segment topic that never matches: the
  // dynamic program does 64 x 120 steps, backtracking would never end.
  std::string pattern, topic;
  for (int i = 0; i < 63; ++i) pattern += "**/";
  pattern += "z";
  for (int i = 0; i < 120; ++i) topic += (i ? "/a" : "a");
  EXPECT_TRUE(ValidatePattern(pattern).ok());
  EXPECT_FALSE(PatternMatches(pattern, topic));
  EXPECT_TRUE(PatternMatches(pattern, topic + "/z"));
}

}  // namespace
}  // namespace pubsub
}  // namespace mesh
