"""The fault and bad-input cases of issue 13 that the test suite covers, for RELIABILITY.md.

`CASES` is read by `benchmarks/reliability/bench.py` (through its report module); each entry names
the area, the case, the pytest node id that checks it and what happens. Nothing here runs by itself.
"""

from __future__ import annotations

FAULTS = "tests/reliability/test_reliability_faults.py"
INPUT = "tests/reliability/test_reliability_input.py"

CASES: list[dict[str, str]] = [
    # -- Faults ------------------------------------------------------------------------------
    {"area": "faults", "case": "trainer fit SIGKILLed mid-epoch, then while writing model.keras",
     "test": f"{FAULTS}::test_training_killed_mid_epoch_and_mid_write_then_a_clean_run",
     "expected": "no run folder either time, only a hidden .RUN.partial-* folder without a "
                 "finished model; the feature cache stays sound (a damaged entry is rebuilt); "
                 "the next run completes and reuses the cache (slow)"},
    {"area": "faults", "case": "feature cache write SIGKILLed with half an array written",
     "test": f"{FAULTS}::test_feature_cache_write_killed_mid_save_leaves_no_usable_half_file",
     "expected": "the half file stays a hidden temporary; the entry is a miss and is "
                 "recomputed; earlier entries still verify (slow)"},
    {"area": "faults", "case": "feature cache file truncated, emptied, bit-flipped or unsealed",
     "test": f"{FAULTS}::test_damaged_feature_cache_file_is_detected_and_rebuilt",
     "expected": "SHA-256 seal mismatch -> cache miss (never wrong numbers, never an error); "
                 "rewritten and sealed"},
    {"area": "faults", "case": "convert SIGKILLed mid-write (half the file written)",
     "test": f"{FAULTS}::test_conversion_killed_mid_write_keeps_the_previous_tflite[half]",
     "expected": "the previous .tflite at the target keeps its SHA-256; only a hidden "
                 ".model.tmp-* file is left"},
    {"area": "faults", "case": "convert SIGKILLed just before the rename",
     "test": f"{FAULTS}::test_conversion_killed_mid_write_keeps_the_previous_tflite[replace]",
     "expected": "the previous .tflite keeps its SHA-256; nothing partial under its name (slow)"},
    {"area": "faults", "case": "camera lost mid-run, restored after two failed reopens",
     "test": f"{FAULTS}::test_camera_lost_and_restored_mid_run",
     "expected": "one notice when lost, one when back; reconnects 1 in the summary; the run "
                 "goes on to --max-frames"},
    {"area": "faults", "case": "camera lost for good",
     "test": f"{FAULTS}::test_camera_lost_for_good_ends_with_a_clear_message_in_bounded_time",
     "expected": "ends after the reopen attempts (seconds): 'camera 0 stopped delivering "
                 "frames; could not reopen it after N attempts', exit 1, outputs finished"},
    {"area": "faults", "case": "stream URL that accepts and never answers",
     "test": f"{FAULTS}::test_stream_that_never_answers_is_a_clear_error_in_bounded_time",
     "expected": "'edge: error: cannot open stream URL', exit 2, after STREAM_TIMEOUT (10 s), "
                 "no FFmpeg noise"},
    {"area": "faults", "case": "MJPEG stream that stalls mid-run (and comes back, or not)",
     "test": f"{FAULTS}::test_stream_that_stalls_mid_run_is_noticed",
     "expected": "noticed after the read timeout, reopened; goes on when it comes back, else "
                 "ends with 'could not reopen it after N attempts' (under 30 s)"},
    {"area": "faults", "case": "disk full while saving video, JSON lines and snapshots",
     "test": f"{FAULTS}::test_disk_full_while_saving_video_json_lines_and_snapshots",
     "expected": "the run ends normally (exit 0, every frame processed); one warning line per "
                 "output; summary counters json/video/snapshots; JSON lines keep whole lines "
                 "only; no temporary files left"},
    {"area": "faults", "case": "disk filling up while saving the video",
     "test": f"{FAULTS}::test_video_on_a_filling_disk_is_finished_early_and_plays",
     "expected": "the video is finished when free space drops below VIDEO_DISK_RESERVE (8 MiB) "
                 "and plays every recorded frame; the rest is counted as lost"},
    # -- Bad input (data) ----------------------------------------------------------------------
    {"area": "bad input", "case": "files deleted after discovery (trainer)",
     "test": f"{INPUT}::test_files_deleted_after_discovery_are_counted_skips",
     "expected": "counted skips with reason 'unreadable: No such file ...'"},
    {"area": "bad input", "case": "trainer fit: spaces and non-ASCII names, files deleted "
                                  "during the run",
     "test": f"{INPUT}::test_names_with_spaces_and_non_ascii_and_deleted_files_through_trainer_fit",
     "expected": "run completes; the deleted files are counted skips in summary.json and "
                 "skipped.txt; names survive in split.json (slow)"},
    {"area": "bad input", "case": "images deleted during an edge run",
     "test": f"{INPUT}::test_images_deleted_during_an_edge_run_are_counted",
     "expected": "counted as unreadable; one notice names the first ('... is gone'); the run "
                 "ends at the end of the folder"},
    {"area": "bad input", "case": "symlink loops in the data folder (trainer and edge)",
     "test": f"{INPUT}::test_symlink_loops_in_the_data_folder_neither_hang_nor_crash",
     "expected": "discovery under a second, only real files used; edge run reads the one real "
                 "image"},
    {"area": "bad input", "case": "names with spaces and non-ASCII through edge run --source DIR",
     "test": f"{INPUT}::test_names_with_spaces_and_non_ascii_through_edge_run",
     "expected": "every image processed; JSON lines name each file exactly"},
    {"area": "bad input", "case": "a 10,000-file class folder",
     "test": f"{INPUT}::test_ten_thousand_file_class_folder_is_discovered_fast",
     "expected": "discovery well under 10 s (measured 1.4 s trainer, 0.5 s edge)"},
    {"area": "bad input", "case": "20,000 x 20,000 image (real 49 KB PNG; JPEG header claim)",
     "test": f"{INPUT}::test_decompression_bomb_is_skipped_by_the_trainer_with_a_reason",
     "expected": "trainer skips it: 'image too large (decompression bomb guard)'; peak RSS "
                 "~60 MB"},
    {"area": "bad input", "case": "20,000 x 20,000 image through edge run --source",
     "test": f"{INPUT}::test_decompression_bomb_is_refused_by_edge_run",
     "expected": "a single file: one error line, exit 2; in a folder: skipped, counted, one "
                 "notice; header read only, peak RSS ~85 MB (cv2.imread alone: 2.4 GB)"},
    {"area": "bad input", "case": "image headers read without decoding",
     "test": f"{INPUT}::test_bomb_headers_are_read_without_decoding",
     "expected": "PNG/JPEG/BMP/WebP/TIFF sizes from the header; MAX_IMAGE_PIXELS 120 MP"},
    # -- Model files ---------------------------------------------------------------------------
    {"area": "model files", "case": "every Keras load path in safe mode",
     "test": f"{INPUT}::test_every_keras_model_load_is_in_safe_mode",
     "expected": "the one loader (trainer/fit/artifacts.py) passes safe_mode=True; nothing enables "
                 "unsafe deserialization"},
    {"area": "model files", "case": "Keras file with a Python Lambda (.h5 and .keras)",
     "test": f"{INPUT}::test_keras_file_with_python_code_is_refused_everywhere",
     "expected": "load_keras_model, convert and trainer evaluate refuse it in one line; the "
                 "code never runs"},
    {"area": "model files", "case": ".tflite over 200 MB (sparse 250 MB file)",
     "test": f"{INPUT}::test_oversized_tflite_is_refused_unread",
     "expected": "edge run --model and convert inspect: one line, exit 2, file not read "
                 "(peak RSS ~65 MB)"},
    {"area": "model files", "case": ".tflite whose metadata does not match its tensors",
     "test": f"{INPUT}::test_tflite_whose_metadata_does_not_match_its_tensors_is_refused",
     "expected": "input size or output units differ from the contract: edge run --model and "
                 "convert inspect refuse it in one line, exit 2"},
]
