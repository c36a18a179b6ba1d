"""Data: image and audio data sets, augmentation, and the audio front end."""
