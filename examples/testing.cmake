# The deterministic-testing example (docs/testing.md, "Finding a seed"):
#   lost_update  a lost update (read, weft_yield, write) that plain runs never
#                show; tools/weft-seeds finds a failing seed, which replays.
add_executable(lost_update ${CMAKE_CURRENT_LIST_DIR}/lost_update.c)
target_link_libraries(lost_update PRIVATE weft)
if(BUILD_TESTING)
  # A plain run passes (weft's default order keeps the updates apart).
  add_test(NAME example_lost_update COMMAND lost_update)
  set_tests_properties(example_lost_update PROPERTIES LABELS "example" TIMEOUT 60)
  # The seed search finds a failing seed, and that seed fails the same way
  # twice more (examples/seed_search.sh).
  add_test(NAME example_lost_update_seeds
           COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/seed_search.sh
                   ${PROJECT_SOURCE_DIR}/tools/weft-seeds $<TARGET_FILE:lost_update>)
  set_tests_properties(example_lost_update_seeds PROPERTIES LABELS "example" TIMEOUT 300)
endif()
