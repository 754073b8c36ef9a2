# Every package of the Pocobelle BR2_EXTERNAL tree.
include $(sort $(wildcard $(BR2_EXTERNAL_POCOBELLE_PATH)/package/*/*.mk))
