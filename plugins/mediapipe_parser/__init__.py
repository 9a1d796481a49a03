"""`mediapipe`: face parsing from MediaPipe's 478-landmark face mesh (region polygons), a real
pretrained model that runs offline on CPU. Needs the optional extra `mediapipe`. Registered by
`splatrefine.plugins.mediapipe_parser.plugin`."""
